"""The signer's tables: per-account nonces, transaction records by idempotency key, attempts.

Invariants the schema itself enforces: one record per (caller, idempotency key), and at most one
record per (account, nonce) - a nonce cannot be handed out twice, whatever the code does.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class SignerBase(DeclarativeBase):
    pass


class AccountRow(SignerBase):
    __tablename__ = "signer_accounts"

    address: Mapped[str] = mapped_column(sa.String(42), primary_key=True)
    #: The next nonce to hand out. Only ever grows, in the same transaction as the records.
    next_nonce: Mapped[int] = mapped_column(sa.BigInteger)


class TransactionRow(SignerBase):
    __tablename__ = "signer_transactions"
    __table_args__ = (
        sa.UniqueConstraint("caller", "idempotency_key", name="uq_signer_tx_idempotency"),
        sa.UniqueConstraint("from_address", "nonce", name="uq_signer_tx_nonce"),
        sa.Index("ix_signer_tx_open", "status", "from_address", "nonce"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    caller: Mapped[str] = mapped_column(sa.String(100))
    idempotency_key: Mapped[str] = mapped_column(sa.String(200))
    #: sha256 of the request, so a key reused for a different request is refused.
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    from_key: Mapped[str] = mapped_column(sa.String(80))
    from_address: Mapped[str] = mapped_column(sa.String(42))
    to_address: Mapped[str] = mapped_column(sa.String(42))
    function: Mapped[str] = mapped_column(sa.String(300))
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)
    value_wei: Mapped[str] = mapped_column(sa.String(80))
    gas_limit: Mapped[int] = mapped_column(sa.BigInteger)
    nonce: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    tx_hash: Mapped[str | None] = mapped_column(sa.String(66), nullable=True)
    block_number: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    block_hash: Mapped[str | None] = mapped_column(sa.String(66), nullable=True)
    #: The receipt as JSON (gas used, price, logs) once mined.
    receipt: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    revert_reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class AttemptRow(SignerBase):
    """One signed version of a record: the first, and one more per fee bump (same nonce)."""

    __tablename__ = "signer_attempts"

    tx_hash: Mapped[str] = mapped_column(sa.String(66), primary_key=True)
    transaction_id: Mapped[int] = mapped_column(
        ID, sa.ForeignKey("signer_transactions.id"), index=True
    )
    raw: Mapped[bytes] = mapped_column(sa.LargeBinary)
    max_fee_per_gas: Mapped[str] = mapped_column(sa.String(80))
    max_priority_fee_per_gas: Mapped[str] = mapped_column(sa.String(80))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
