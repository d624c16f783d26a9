"""Escrow: sessions, meter samples, chain operations.

Revision ID: escrow_0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "escrow_0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = ("escrow",)
depends_on: str | Sequence[str] | None = "core_0001"

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _time(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "escrow_sessions",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("chain_session_id", sa.String(66), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("driver_id", sa.String(64), nullable=False),
        sa.Column("driver_address", sa.String(42), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("cpo_id", sa.String(64), nullable=False),
        sa.Column("station_id", sa.String(66), nullable=False),
        sa.Column("charge_point_id", sa.String(64), nullable=False),
        sa.Column("connector_id", sa.Integer, nullable=False),
        sa.Column("evse_id", sa.String(64), nullable=True),
        sa.Column("id_token", sa.String(64), nullable=False),
        sa.Column("max_amount", sa.BigInteger, nullable=False),
        _time("expiry", nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("open_op", sa.String(200), nullable=True),
        sa.Column("close_op", sa.String(200), nullable=True),
        sa.Column("open_tx_hash", sa.String(66), nullable=True),
        sa.Column("close_tx_hash", sa.String(66), nullable=True),
        sa.Column("start_command_id", sa.String(64), nullable=True),
        sa.Column("stop_command_id", sa.String(64), nullable=True),
        _time("start_deadline"),
        sa.Column("transaction_id", sa.String(64), nullable=True),
        _time("started_at"),
        _time("stopped_at"),
        _time("last_activity_at"),
        sa.Column("stop_reason", sa.Text, nullable=True),
        sa.Column("cost_so_far", sa.BigInteger, nullable=False),
        sa.Column("signed_meter_data", sa.Text, nullable=False),
        sa.Column("amount_settled", sa.BigInteger, nullable=True),
        sa.Column("cdr", sa.Text, nullable=True),
        sa.Column("cdr_hash", sa.String(66), nullable=True),
        sa.Column("meter_verified", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
        sa.UniqueConstraint("driver_id", "idempotency_key", name="uq_escrow_driver_idempotency"),
    )
    op.create_index("ix_escrow_sessions_state", "escrow_sessions", ["state"])
    op.create_table(
        "escrow_meter_samples",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column(
            "session_id",
            sa.String(64),
            sa.ForeignKey("escrow_sessions.session_id"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(8), nullable=False),
        _time("measured_at", nullable=False),
        sa.Column("energy_wh", sa.BigInteger, nullable=False),
        sa.Column("power_w", sa.BigInteger, nullable=True),
        sa.Column("signed_data", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_escrow_meter_samples_session_id", "escrow_meter_samples", ["session_id"]
    )
    op.create_table(
        "escrow_chain_ops",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("function", sa.String(64), nullable=False),
        sa.Column("key_alias", sa.String(64), nullable=False),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("sessions", sa.Text, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=True),
        sa.Column("gas_used", sa.BigInteger, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
    )
    op.create_index("ix_escrow_chain_ops_status", "escrow_chain_ops", ["status"])


def downgrade() -> None:
    op.drop_index("ix_escrow_chain_ops_status", table_name="escrow_chain_ops")
    op.drop_table("escrow_chain_ops")
    op.drop_index("ix_escrow_meter_samples_session_id", table_name="escrow_meter_samples")
    op.drop_table("escrow_meter_samples")
    op.drop_index("ix_escrow_sessions_state", table_name="escrow_sessions")
    op.drop_table("escrow_sessions")
