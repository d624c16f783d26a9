"""The registry's metrics. The first two names are what the Helm chart's alerts query."""

from __future__ import annotations

from chargenet.core.metrics import counter, gauge, histogram

INDEXED_BLOCK = gauge("chargenet_registry_indexed_block", "The last block the index has applied")
LAG_BLOCKS = gauge(
    "chargenet_registry_indexer_lag_blocks", "Blocks between the node's head and the index"
)
EVENTS_APPLIED = counter(
    "chargenet_registry_events_applied", "Chain logs applied to the index, by kind", ("kind",)
)
REORGS = counter("chargenet_registry_reorgs", "Chain reorganisations undone in the index")
ROLLED_BACK_BLOCKS = counter(
    "chargenet_registry_rolled_back_blocks", "Blocks whose effects a reorganisation undid"
)
STATUS_EVENTS = counter(
    "chargenet_registry_status_events",
    "Charge point events handled, by outcome (applied, duplicate, stale, ignored)",
    ("outcome",),
)
API_LATENCY = histogram(
    "chargenet_registry_api_latency_seconds",
    "REST request latency, by route template and status class",
    ("route", "method", "status"),
)
