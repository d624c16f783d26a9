"""Prometheus metrics with the project's conventions enforced where they are declared.

Conventions: names start with ``chargenet_``, carry base units (``_seconds``, ``_bytes``, ``_wei``,
``_tokens``), counters end in ``_total``, and labels never carry unbounded values such as wallet
addresses, session ids or charge point ids (they would explode the series count).
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

PREFIX = "chargenet_"
NAME_PATTERN = re.compile(r"^chargenet_[a-z][a-z0-9_]*[a-z0-9]$")
FORBIDDEN_LABELS = frozenset(
    {
        "address",
        "wallet",
        "wallet_address",
        "session",
        "session_id",
        "charge_point",
        "charge_point_id",
        "driver",
        "driver_id",
        "tx_hash",
        "event_id",
        "user",
        "user_id",
    }
)
#: Latency buckets from 1 ms to 10 s: OCPP handlers live at the low end, chain calls at the high.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REGISTRY = CollectorRegistry(auto_describe=True)

M = TypeVar("M", Counter, Gauge, Histogram)


class MetricNameError(ValueError):
    pass


def check_name(name: str, labels: tuple[str, ...], *, counter: bool = False) -> None:
    if not NAME_PATTERN.match(name):
        raise MetricNameError(f"{name}: metric names are snake_case and start with {PREFIX}")
    if counter and name.endswith("_total"):
        raise MetricNameError(f"{name}: give counters their name without _total; it is added")
    if not counter and name.endswith("_total"):
        raise MetricNameError(f"{name}: only counters end in _total")
    bad = FORBIDDEN_LABELS.intersection(labels)
    if bad:
        raise MetricNameError(f"{name}: high-cardinality labels {sorted(bad)} are not allowed")


def counter(
    name: str,
    documentation: str,
    labels: tuple[str, ...] = (),
    registry: CollectorRegistry = REGISTRY,
) -> Counter:
    """A counter named ``name``; Prometheus exposes it as ``<name>_total``."""
    check_name(name, labels, counter=True)
    return Counter(name, documentation, labels, registry=registry)


class Children(Generic[M]):
    """A labelled metric's children, looked up in a dict.

    ``labels()`` checks and locks on every call (5-9 us), which a hot path pays per message; the
    child for the same label values is the same object, so it is looked up once. Labels are
    bounded by convention, so is this dict.
    """

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


def gauge(
    name: str,
    documentation: str,
    labels: tuple[str, ...] = (),
    registry: CollectorRegistry = REGISTRY,
) -> Gauge:
    check_name(name, labels)
    return Gauge(name, documentation, labels, registry=registry)


def histogram(
    name: str,
    documentation: str,
    labels: tuple[str, ...] = (),
    buckets: tuple[float, ...] = LATENCY_BUCKETS,
    registry: CollectorRegistry = REGISTRY,
) -> Histogram:
    check_name(name, labels)
    if not name.endswith(("_seconds", "_bytes", "_gas", "_tokens", "_wh", "_events")):
        raise MetricNameError(f"{name}: histograms name their base unit")
    return Histogram(name, documentation, labels, buckets=buckets, registry=registry)


def exposition(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The text exposition and its content type, for a ``/metrics`` endpoint."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
