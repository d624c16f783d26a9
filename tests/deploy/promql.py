"""Metric names in PromQL expressions, and the names a /metrics exposition makes queryable.

Enough of PromQL to find the metric selectors of the chart's alerts and dashboard, not a parser:
string literals, label matchers, range and subquery brackets, grouping clauses and function calls
are removed, and what remains that looks like an identifier and is not a keyword is a metric name.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

#: Words that look like identifiers but are PromQL syntax.
KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "atan2",
    }
)
#: Series Prometheus makes itself for every target: no service exports them.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
#: Grafana's built-in variables ($__rate_interval etc.) are removed before parsing.
GRAFANA_VARIABLE = re.compile(r"\$\{?__?[a-zA-Z_]+\}?|\$\{?[a-zA-Z_]+\}?")

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_NUMBER_UNIT = re.compile(r"\b\d+(\.\d+)?(e[+-]?\d+)?(ms|s|m|h|d|w|y)?\b", re.IGNORECASE)


def metric_names(expression: str) -> set[str]:
    """The metric names an expression selects (``foo_bucket`` stays ``foo_bucket``)."""
    text = GRAFANA_VARIABLE.sub("1", expression)
    text = _STRING.sub('""', text)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER_UNIT.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in KEYWORDS:
            continue  # a function, an aggregation or syntax
        names.add(word)
    return names


def exported_names(exposition: str) -> set[str]:
    """Every series name a Prometheus text exposition makes queryable.

    A family without samples yet (a labelled metric nothing has touched) counts too: its name is
    declared, and the alert or panel will find series once the service does its work.
    """
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        base = family.name
        if family.type == "counter":
            names |= {f"{base}_total", f"{base}_created"}
        elif family.type == "histogram":
            names |= {f"{base}_bucket", f"{base}_count", f"{base}_sum", f"{base}_created"}
        elif family.type == "summary":
            names |= {base, f"{base}_count", f"{base}_sum", f"{base}_created"}
        else:
            names.add(base)
        names |= {sample.name for sample in family.samples}
    return names


def family_of(series_name: str) -> str:
    """The metric a series name belongs to, as the services declare it (without suffixes)."""
    for suffix in ("_bucket", "_count", "_sum", "_total", "_created"):
        if series_name.endswith(suffix):
            return series_name.removesuffix(suffix)
    return series_name
