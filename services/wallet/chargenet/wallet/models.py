"""The wallet's tables (migrations ``wallet_0001``, ``wallet_0002``): drivers, top-ups, payouts,
sessions, billing details."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chargenet.core.db.database import among
from chargenet.core.db.tables import utcnow

BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")
#: Token base units as a signed 64-bit integer: 9.2 trillion EUR at 6 decimals, far above any
#: wallet; the API refuses larger amounts before they reach a column.
AMOUNT = BIGINT
MAX_AMOUNT = 2**63 - 1


class WalletBase(DeclarativeBase):
    pass


class Driver(WalletBase):
    """A driver's account. ``number`` picks the custodial key; ``last_nonce`` the next session."""

    __tablename__ = "wallet_drivers"

    number: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=True)
    driver_id: Mapped[str] = mapped_column(sa.String(200), unique=True)
    email: Mapped[str | None] = mapped_column(sa.String(320), unique=True, nullable=True)
    #: argon2id; null for drivers whose identity lives with an external issuer.
    password_hash: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    key_alias: Mapped[str] = mapped_column(sa.String(64), unique=True)
    address: Mapped[str] = mapped_column(sa.String(42), unique=True)
    #: The OCPP id token the charge point is started with.
    id_token: Mapped[str] = mapped_column(sa.String(20), unique=True)
    #: The highest session nonce handed out; null until first read from ``lastNonceOf``.
    last_nonce: Mapped[int | None] = mapped_column(BIGINT, nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class TopUp(WalletBase):
    """A captured payment turned into tokens in the driver's escrow deposit, step by step."""

    __tablename__ = "wallet_topups"

    payment_reference: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    driver_id: Mapped[str] = mapped_column(sa.String(200), index=True)
    amount: Mapped[int] = mapped_column(AMOUNT)
    #: captured -> minted -> deposited (final); failed (final, with ``error``).
    status: Mapped[str] = mapped_column(sa.String(16))
    mint_tx: Mapped[str | None] = mapped_column(sa.String(66), nullable=True)
    #: The permit signed for the deposit, kept so a retry sends the identical request.
    deposit_attempt: Mapped[int] = mapped_column(sa.Integer, default=0)
    permit: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    deposit_tx: Mapped[str | None] = mapped_column(sa.String(66), nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class Payout(WalletBase):
    """Tokens taken out of the escrow deposit, burned, and paid out through the provider."""

    __tablename__ = "wallet_payouts"

    payout_reference: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    driver_id: Mapped[str] = mapped_column(sa.String(200), index=True)
    amount: Mapped[int] = mapped_column(AMOUNT)
    #: requested -> withdrawn -> burned -> paid (final); failed (final, with ``error``).
    status: Mapped[str] = mapped_column(sa.String(16))
    #: What must come out of the escrow deposit (the rest is in the driver's token balance),
    #: fixed when the payout is created so a resumed payout repeats the same steps.
    withdraw_amount: Mapped[int] = mapped_column(AMOUNT)
    permit_attempt: Mapped[int] = mapped_column(sa.Integer, default=0)
    permit: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    burn_tx: Mapped[str | None] = mapped_column(sa.String(66), nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class ChargingSession(WalletBase):
    """A driver's session: what was requested, and the projection of the ``sessions`` topic."""

    __tablename__ = "wallet_sessions"
    __table_args__ = (sa.UniqueConstraint("driver_id", "idempotency_key"),)

    session_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    driver_id: Mapped[str] = mapped_column(sa.String(200), index=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(200))
    #: sha256 of the request body: the same key with a different request is refused.
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    station_id: Mapped[str] = mapped_column(sa.String(66))
    cpo_id: Mapped[str] = mapped_column(sa.String(200))
    charge_point_id: Mapped[str] = mapped_column(sa.String(64))
    connector_id: Mapped[int] = mapped_column(sa.Integer)
    evse_id: Mapped[str | None] = mapped_column(sa.String(48), nullable=True)
    max_amount: Mapped[int] = mapped_column(AMOUNT)
    currency: Mapped[str] = mapped_column(sa.String(3))
    tariff: Mapped[str] = mapped_column(sa.Text)  # the OCPI tariff document, JSON
    time_zone: Mapped[str] = mapped_column(sa.String(64))
    chain_session_id: Mapped[str] = mapped_column(sa.String(66), unique=True)
    driver_nonce: Mapped[int] = mapped_column(BIGINT)
    expiry: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))

    state: Mapped[str] = mapped_column(sa.String(20), index=True)
    stop_requested: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    meter_start_wh: Mapped[int | None] = mapped_column(BIGINT, nullable=True)
    energy_wh: Mapped[int] = mapped_column(BIGINT, default=0)
    cost_so_far: Mapped[int] = mapped_column(AMOUNT, default=0)
    amount_settled: Mapped[int | None] = mapped_column(AMOUNT, nullable=True)
    amount_refunded: Mapped[int | None] = mapped_column(AMOUNT, nullable=True)
    reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    stopped_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    #: Bumped by every change, so a live stream knows when to send.
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


#: How far along a session is (``ChargingSession.state``); nothing moves it back.
RANK = {
    "requested": 0,
    "open": 1,
    "charging": 2,
    "stopping": 3,
    "stopped": 4,
    "priced": 5,
    "cancelled": 6,
    "settled": 7,
    "refunded": 8,
    "failed": 9,
}


def advance(row: ChargingSession, state: str) -> None:
    """Move the session on to ``state``, unless it is already further along."""
    if RANK[state] >= RANK.get(row.state, 0):
        row.state = state


#: Sessions locked in one query, in id order: every writer of several sessions (the live view's
#: batches, stops asked together) locks them in one order, so no two can deadlock.
LOCK_SESSIONS = (
    sa.select(ChargingSession)
    .where(among(ChargingSession.session_id, "ids"))
    .order_by(ChargingSession.session_id)
    .with_for_update()
)


def request_stop(row: ChargingSession) -> None:
    """A stop was asked for (by the driver, or by the escrow for the budget): a session not yet
    past charging is stopping from now on."""
    row.stop_requested = True
    if row.state in ("open", "charging"):
        advance(row, "stopping")


class MeterPoint(WalletBase):
    """The meter samples of a running session, which price the cost so far."""

    __tablename__ = "wallet_meter_points"

    session_id: Mapped[str] = mapped_column(
        sa.ForeignKey("wallet_sessions.session_id", ondelete="CASCADE"), primary_key=True
    )
    measured_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), primary_key=True)
    energy_wh: Mapped[int] = mapped_column(BIGINT)
    power_w: Mapped[int | None] = mapped_column(BIGINT, nullable=True)


class BillingDetails(WalletBase):
    """Whom a driver's invoices are made out to (migration ``wallet_0002``); no row: the
    wallet's default billing country and no address (see :mod:`chargenet.wallet.billing`)."""

    __tablename__ = "wallet_billing_details"

    driver_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    name: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    street: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    postcode: Mapped[str | None] = mapped_column(sa.String(20), nullable=True)
    city: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    country: Mapped[str] = mapped_column(sa.String(2))  # ISO 3166-1 alpha-2
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
