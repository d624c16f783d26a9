"""The wallet's metrics (``chargenet_wallet_*``)."""

from __future__ import annotations

from chargenet.core.metrics import counter, histogram

#: Top-up and payout amounts: 1 to 1,000 EUR in token base units.
AMOUNT_BUCKETS = tuple(float(eur * 10**6) for eur in (1, 5, 10, 20, 50, 100, 200, 500, 1000))

ACCOUNTS = counter("chargenet_wallet_accounts", "Driver accounts created")
LOGINS = counter("chargenet_wallet_logins", "Password logins, by outcome", ("outcome",))
TOPUPS = counter("chargenet_wallet_topups", "Top-up requests, by outcome", ("outcome",))
TOPUP_AMOUNT = histogram(
    "chargenet_wallet_topup_amount_tokens",
    "Amounts topped up, in token base units",
    buckets=AMOUNT_BUCKETS,
)
PAYOUTS = counter("chargenet_wallet_payouts", "Payout requests, by outcome", ("outcome",))
SESSION_REQUESTS = counter(
    "chargenet_wallet_session_requests", "Session requests, by outcome", ("outcome",)
)
STOP_REQUESTS = counter("chargenet_wallet_stop_requests", "Stop requests, by outcome", ("outcome",))
PROJECTED_EVENTS = counter(
    "chargenet_wallet_projected_events", "Session events applied to the live view", ("type",)
)
OPERATION_SECONDS = histogram(
    "chargenet_wallet_operation_seconds",
    "Time taken by the wallet's operations that reach the chain or the signer",
    ("operation",),
)
