"""Signer: per-account nonces, transaction records by idempotency key, signed attempts.

Revision ID: signer_0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "signer_0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = ("signer",)
depends_on: str | Sequence[str] | None = "core_0001"

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "signer_accounts",
        sa.Column("address", sa.String(42), primary_key=True),
        sa.Column("next_nonce", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "signer_transactions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("caller", sa.String(100), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("from_key", sa.String(80), nullable=False),
        sa.Column("from_address", sa.String(42), nullable=False),
        sa.Column("to_address", sa.String(42), nullable=False),
        sa.Column("function", sa.String(300), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("value_wei", sa.String(80), nullable=False),
        sa.Column("gas_limit", sa.BigInteger, nullable=False),
        sa.Column("nonce", sa.BigInteger, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("block_number", sa.BigInteger, nullable=True),
        sa.Column("block_hash", sa.String(66), nullable=True),
        sa.Column("receipt", sa.Text, nullable=True),
        sa.Column("revert_reason", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("caller", "idempotency_key", name="uq_signer_tx_idempotency"),
        sa.UniqueConstraint("from_address", "nonce", name="uq_signer_tx_nonce"),
    )
    op.create_index("ix_signer_tx_open", "signer_transactions", ["status", "from_address", "nonce"])
    op.create_table(
        "signer_attempts",
        sa.Column("tx_hash", sa.String(66), primary_key=True),
        sa.Column("transaction_id", ID, sa.ForeignKey("signer_transactions.id"), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("max_fee_per_gas", sa.String(80), nullable=False),
        sa.Column("max_priority_fee_per_gas", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_signer_attempts_transaction_id", "signer_attempts", ["transaction_id"])


def downgrade() -> None:
    op.drop_index("ix_signer_attempts_transaction_id", table_name="signer_attempts")
    op.drop_table("signer_attempts")
    op.drop_index("ix_signer_tx_open", table_name="signer_transactions")
    op.drop_table("signer_transactions")
    op.drop_table("signer_accounts")
