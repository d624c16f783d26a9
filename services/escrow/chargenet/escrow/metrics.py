"""The escrow's metrics (names fixed by docs/DEPLOY.md where the chart's alerts use them)."""

from __future__ import annotations

from chargenet.core.metrics import counter, gauge, histogram

SETTLEMENT_LAG = gauge(
    "chargenet_escrow_settlement_lag_seconds",
    "Seconds the oldest stopped, not yet settled session has waited since it stopped",
)
SESSIONS = gauge(
    "chargenet_escrow_sessions",
    "Sessions currently in each state short of a final one (those are counted by "
    "chargenet_escrow_sessions_finished_total)",
    ("state",),
)
TRANSITIONS = counter(
    "chargenet_escrow_transitions", "Session state transitions", ("from_state", "to_state")
)
FINISHED = counter(
    "chargenet_escrow_sessions_finished",
    "Sessions reaching a final state: settled, refunded, rejected, failed",
    ("outcome",),
)
SETTLED_TOKENS = counter(
    "chargenet_escrow_settled_tokens", "Token base units (6 decimals) settled to CPOs"
)
GAS_USED = counter(
    "chargenet_escrow_gas_used", "Gas used by the escrow's transactions", ("function",)
)
TRANSACTION_GAS = histogram(
    "chargenet_escrow_transaction_gas",
    "Gas used per escrow transaction (a batch counts once)",
    ("function",),
    buckets=(30_000, 60_000, 100_000, 200_000, 500_000, 1_000_000, 3_000_000, 10_000_000),
)
BATCH_SIZE = histogram(
    "chargenet_escrow_batch_events",
    "Sessions per open or settle transaction",
    ("function",),
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)

CONSUMER_BATCH = histogram(
    "chargenet_escrow_consumer_batch_events",
    "Events the consumer applied in one transaction",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
CONSUMER_BATCH_TIME = histogram(
    "chargenet_escrow_consumer_batch_seconds",
    "Seconds from a consumer batch's start to its commit (its sessions stay locked meanwhile)",
)


def _initialise() -> None:
    """Every documented series exists from the start (at 0), so dashboards and alerts see it."""
    from chargenet.escrow.states import FINAL, LIVE

    for state in LIVE:
        SESSIONS.labels(state.value)
    for outcome in FINAL:
        FINISHED.labels(outcome.value.lower())
    SETTLEMENT_LAG.set(0)


_initialise()
