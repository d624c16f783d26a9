"""Drivers, top-ups, payouts, sessions and their meter samples.

Revision ID: wallet_0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "wallet_0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = ("wallet",)
depends_on: Sequence[str] | None = ("core_0001",)

BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wallet_drivers",
        sa.Column("number", BIGINT, primary_key=True, autoincrement=True),
        sa.Column("driver_id", sa.String(200), nullable=False, unique=True),
        sa.Column("email", sa.String(320), nullable=True, unique=True),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("key_alias", sa.String(64), nullable=False, unique=True),
        sa.Column("address", sa.String(42), nullable=False, unique=True),
        sa.Column("id_token", sa.String(20), nullable=False, unique=True),
        sa.Column("last_nonce", BIGINT, nullable=True),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "wallet_topups",
        sa.Column("payment_reference", sa.String(200), primary_key=True),
        sa.Column("driver_id", sa.String(200), nullable=False, index=True),
        sa.Column("amount", BIGINT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mint_tx", sa.String(66), nullable=True),
        sa.Column("deposit_attempt", sa.Integer, nullable=False),
        sa.Column("permit", sa.Text, nullable=True),
        sa.Column("deposit_tx", sa.String(66), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "wallet_payouts",
        sa.Column("payout_reference", sa.String(200), primary_key=True),
        sa.Column("driver_id", sa.String(200), nullable=False, index=True),
        sa.Column("amount", BIGINT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("withdraw_amount", BIGINT, nullable=False),
        sa.Column("permit_attempt", sa.Integer, nullable=False),
        sa.Column("permit", sa.Text, nullable=True),
        sa.Column("burn_tx", sa.String(66), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "wallet_sessions",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("driver_id", sa.String(200), nullable=False, index=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("station_id", sa.String(66), nullable=False),
        sa.Column("cpo_id", sa.String(200), nullable=False),
        sa.Column("charge_point_id", sa.String(64), nullable=False),
        sa.Column("connector_id", sa.Integer, nullable=False),
        sa.Column("evse_id", sa.String(48), nullable=True),
        sa.Column("max_amount", BIGINT, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("tariff", sa.Text, nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("chain_session_id", sa.String(66), nullable=False, unique=True),
        sa.Column("driver_nonce", BIGINT, nullable=False),
        sa.Column("expiry", TS, nullable=False),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("stop_requested", sa.Boolean, nullable=False),
        sa.Column("meter_start_wh", BIGINT, nullable=True),
        sa.Column("energy_wh", BIGINT, nullable=False),
        sa.Column("cost_so_far", BIGINT, nullable=False),
        sa.Column("amount_settled", BIGINT, nullable=True),
        sa.Column("amount_refunded", BIGINT, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("stopped_at", TS, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("driver_id", "idempotency_key"),
    )
    op.create_table(
        "wallet_meter_points",
        sa.Column(
            "session_id",
            sa.String(64),
            sa.ForeignKey("wallet_sessions.session_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("measured_at", TS, primary_key=True),
        sa.Column("energy_wh", BIGINT, nullable=False),
        sa.Column("power_w", BIGINT, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("wallet_meter_points")
    op.drop_table("wallet_sessions")
    op.drop_table("wallet_payouts")
    op.drop_table("wallet_topups")
    op.drop_table("wallet_drivers")
