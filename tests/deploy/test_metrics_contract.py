"""The metric names the chart's alerts and dashboard use: documented, and following the conventions.

docs/DEPLOY.md's table "Metrics the chart relies on" is the contract with the services' engineers:
every name an alert or a dashboard panel queries is listed there, and every listed name passes the
core's naming rules. Whether the services really export them is test_metrics_scrape.py's job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from chargenet.core.metrics import MetricNameError, counter, gauge, histogram
from tests.deploy.chart import CHART, ROOT, Manifest, of_kind
from tests.deploy.promql import SYNTHETIC, exported_names, family_of, metric_names

DEPLOY_DOC = ROOT / "docs" / "DEPLOY.md"
DASHBOARD = CHART / "dashboards" / "chargenet.json"
_ROW = re.compile(
    r"^\|\s*`(?P<series>chargenet_[a-z0-9_]+)`\s*\|\s*(?P<type>gauge|counter|histogram)\s*\|"
    r"\s*(?P<labels>[^|]*)\|\s*(?P<service>[^|]+)\|(?P<meaning>[^|]+)\|\s*(?P<used>[^|]+)\|\s*$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Documented:
    series: str
    type: str
    labels: tuple[str, ...]
    used_by: str

    @property
    def declared(self) -> str:
        """The name a service passes to chargenet.core.metrics (counters without _total)."""
        return family_of(self.series)


def documented_metrics() -> dict[str, Documented]:
    section = (
        DEPLOY_DOC.read_text().split("## Metrics the chart relies on", 1)[1].split("\n## ", 1)[0]
    )
    rows = {}
    for match in _ROW.finditer(section):
        labels = tuple(re.findall(r"`([a-z_]+)`", match["labels"]))
        rows[match["series"]] = Documented(
            match["series"], match["type"], labels, match["used"].strip()
        )
    return rows


def alert_expressions(manifests: list[Manifest]) -> dict[str, str]:
    (rule,) = of_kind(manifests, "PrometheusRule")
    return {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}


def dashboard_expressions() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"{panel['title']} {target['refId']}"] = target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            # label_values(metric, label): the metric is the first argument.
            found[f"${variable['name']}"] = query.split("(", 1)[1].split(",", 1)[0]
    return found


# --- the extraction itself -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('max by (namespace) (chargenet_a_seconds{namespace="x"}) > 900', {"chargenet_a_seconds"}),
        (
            'sum by (cpo) (increase(chargenet_b_total{a=~"x|y"}[10m])) / clamp_min('
            "sum by (cpo) (max_over_time(chargenet_c[10m])), 1) > 0.2",
            {"chargenet_b_total", "chargenet_c"},
        ),
        (
            "histogram_quantile(0.95, sum by (le, function) "
            '(rate(chargenet_d_gas_bucket{namespace="$namespace"}[$__rate_interval])))',
            {"chargenet_d_gas_bucket"},
        ),
        ('up{job=~"chargenet-.*"} == 0 and on (pod) chargenet_e offset 5m', {"up", "chargenet_e"}),
        ("sum(rate(chargenet_f_total[1h] @ 1609746000)) / 1e18 * 60", {"chargenet_f_total"}),
        (
            'chargenet_g unless ignoring (version) chargenet_h{by="on"}',
            {"chargenet_g", "chargenet_h"},
        ),
    ],
)
def test_metric_names_are_extracted_from_promql(expression: str, expected: set[str]) -> None:
    assert metric_names(expression) == expected


def test_exported_names_include_counter_and_histogram_series() -> None:
    exposition = (
        "# HELP chargenet_x_total Things.\n# TYPE chargenet_x_total counter\n"
        'chargenet_x_total{reason="a"} 3.0\n'
        "# HELP chargenet_y_gas Gas.\n# TYPE chargenet_y_gas histogram\n"
        "# HELP chargenet_z Untouched labelled gauge.\n# TYPE chargenet_z gauge\n"
    )
    names = exported_names(exposition)
    assert {
        "chargenet_x_total",
        "chargenet_y_gas_bucket",
        "chargenet_y_gas_count",
        "chargenet_z",
    } <= names
    assert "chargenet_x" not in names


# --- the contract ----------------------------------------------------------------------------


def test_the_documented_metrics_table_is_complete_and_parsable() -> None:
    rows = documented_metrics()
    assert {
        "chargenet_escrow_settlement_lag_seconds",
        "chargenet_registry_indexer_lag_blocks",
        "chargenet_gateway_disconnects_total",
        "chargenet_gateway_connected_charge_points",
    } <= set(rows)
    assert all(row.used_by for row in rows.values())


@pytest.mark.helm
def test_every_alert_metric_is_documented(production_manifests: list[Manifest]) -> None:
    documented = documented_metrics()
    used: set[str] = set()
    for alert, expression in alert_expressions(production_manifests).items():
        names = metric_names(expression) - SYNTHETIC
        assert names or "up" in expression, f"{alert}: no metric found in {expression!r}"
        for name in names:
            assert name in documented, f"{alert} uses {name}, missing from docs/DEPLOY.md"
            assert "alert" in documented[name].used_by, f"{name}: mark it as used by an alert"
        used |= names
    # And no row claims an alert that no longer uses it.
    claimed = {n for n, row in documented.items() if "alert" in row.used_by}
    assert claimed == used


def test_every_dashboard_metric_is_documented() -> None:
    documented = documented_metrics()
    used: set[str] = set()
    for panel, expression in dashboard_expressions().items():
        names = metric_names(expression) - SYNTHETIC
        assert names, f"{panel}: no metric found in {expression!r}"
        for name in names:
            assert name in documented, f"dashboard panel {panel} uses {name}, missing from docs"
        used |= names
    claimed = {n for n, row in documented.items() if "dashboard" in row.used_by}
    assert claimed == used


@pytest.mark.parametrize("series", sorted(documented_metrics()))
def test_documented_metrics_follow_the_naming_conventions(series: str) -> None:
    row = documented_metrics()[series]
    is_counter = row.type == "counter"
    if is_counter:
        assert series.endswith("_total"), "counters are queried as <name>_total"
    if row.type == "histogram":
        assert series.endswith("_bucket"), "histograms are queried by their _bucket series"
    # Declared exactly as a service would, on a throwaway registry: the core's rules decide.
    registry = CollectorRegistry()
    try:
        if row.type == "counter":
            counter(row.declared, "contract check", row.labels, registry=registry)
        elif row.type == "gauge":
            gauge(row.declared, "contract check", row.labels, registry=registry)
        else:
            histogram(row.declared, "contract check", row.labels, registry=registry)
    except MetricNameError as error:
        pytest.fail(str(error))
    assert "cpo" not in row.labels, "the ServiceMonitor adds cpo; a service must not export it"
