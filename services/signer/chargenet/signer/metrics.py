"""The signer's Prometheus metrics (names are used by the Helm chart's dashboard and alerts)."""

from __future__ import annotations

from chargenet.core.metrics import counter, histogram

GAS_BUCKETS = (21_000, 30_000, 50_000, 75_000, 100_000, 150_000, 250_000, 500_000, 1_000_000)

TRANSACTIONS = counter(
    "chargenet_signer_transactions", "Transactions that reached a decided state", ("status",)
)
TRANSACTION_GAS = histogram(
    "chargenet_signer_transaction_gas",
    "Gas used by mined transactions, by contract function",
    ("function",),
    buckets=GAS_BUCKETS,
)
FEES = counter("chargenet_signer_fees_wei", "Fees paid for mined transactions, in wei")
