"""The escrow's own tables: sessions, their meter samples, and chain operations (batches)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from chargenet.core.db.tables import utcnow

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
REFUND_CHECK_INDEX = "ix_escrow_sessions_refund_check_at"
REFUND_CHECK_PENDING = "refund_check_at IS NOT NULL"


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out: SQLite hands back naive datetimes otherwise."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the escrow stores UTC instants only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EscrowBase(DeclarativeBase):
    pass


class SessionRow(EscrowBase):
    """One session: the off-chain truth of its state, and what settling it needs."""

    __tablename__ = "escrow_sessions"
    __table_args__ = (
        sa.UniqueConstraint("driver_id", "idempotency_key", name="uq_escrow_driver_idempotency"),
        # Partial: only the sessions the sweeper waits on have a check time, so the others'
        # updates (every transition) write no entry.
        sa.Index(
            REFUND_CHECK_INDEX,
            "refund_check_at",
            sqlite_where=sa.text(REFUND_CHECK_PENDING),
            postgresql_where=sa.text(REFUND_CHECK_PENDING),
        ),
    )

    session_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    chain_session_id: Mapped[str] = mapped_column(sa.String(66), unique=True)
    state: Mapped[str] = mapped_column(sa.String(16), index=True)
    reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)

    driver_id: Mapped[str] = mapped_column(sa.String(64))
    driver_address: Mapped[str] = mapped_column(sa.String(42))
    idempotency_key: Mapped[str] = mapped_column(sa.String(200))
    cpo_id: Mapped[str] = mapped_column(sa.String(64))
    station_id: Mapped[str] = mapped_column(sa.String(66))
    charge_point_id: Mapped[str] = mapped_column(sa.String(64))
    connector_id: Mapped[int] = mapped_column(sa.Integer)
    evse_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    id_token: Mapped[str] = mapped_column(sa.String(64))
    max_amount: Mapped[int] = mapped_column(sa.BigInteger)
    expiry: Mapped[datetime] = mapped_column(UtcDateTime)
    #: The SessionRequested payload as received (authorisation, tariff, location, meter key).
    request: Mapped[str] = mapped_column(sa.Text)

    open_op: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    close_op: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    open_tx_hash: Mapped[str | None] = mapped_column(sa.String(66), nullable=True)
    close_tx_hash: Mapped[str | None] = mapped_column(sa.String(66), nullable=True)

    start_command_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    stop_command_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    start_deadline: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    transaction_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: When the charge point last reported anything for this session (the lost-charger timeout).
    last_activity_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    stop_reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    cost_so_far: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    signed_meter_data: Mapped[str] = mapped_column(sa.Text, default="[]")

    amount_settled: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    cdr: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    cdr_hash: Mapped[str | None] = mapped_column(sa.String(66), nullable=True)
    meter_verified: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: When the sweeper next reads the escrow of a session in ``SWEPT_FOR_REFUND`` on chain, on
    #: the chain's clock: its expiry at first, later after a back-off. None: not to be read (the
    #: session is in another state, or the chain closed its escrow).
    refund_check_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: Refunds the sweeper sent for it; the wait before it reads the escrow again doubles with each.
    refunds_sent: Mapped[int] = mapped_column(sa.Integer, default=0)

    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    def request_data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.request)
        return data


class MeterSampleRow(EscrowBase):
    """A register reading of a session: its start, each meter value, its stop."""

    __tablename__ = "escrow_meter_samples"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("escrow_sessions.session_id"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(8))  # start, meter, stop
    measured_at: Mapped[datetime] = mapped_column(UtcDateTime)
    energy_wh: Mapped[int] = mapped_column(sa.BigInteger)
    power_w: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    signed_data: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


class ChainOp(EscrowBase):
    """One transaction through the signer; its id is the signer's idempotency key.

    Written (status ``new``) in the same database transaction that moves its sessions on, then
    sent: a crash in between re-sends it under the same key, which the signer answers with the
    transaction the first attempt created, never a second one.
    """

    __tablename__ = "escrow_chain_ops"

    id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # open, settle, cancel, refund
    function: Mapped[str] = mapped_column(sa.String(64))
    key_alias: Mapped[str] = mapped_column(sa.String(64))
    args: Mapped[str] = mapped_column(sa.Text)  # JSON
    sessions: Mapped[str] = mapped_column(sa.Text)  # JSON list of session ids
    status: Mapped[str] = mapped_column(sa.String(8), index=True)  # new, sent, final, failed
    tx_hash: Mapped[str | None] = mapped_column(sa.String(66), nullable=True)
    gas_used: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    def session_ids(self) -> list[str]:
        ids: list[str] = json.loads(self.sessions)
        return ids
