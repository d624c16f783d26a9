"""Escrow: when the sweeper next reads a FAILED session's escrow on chain, and how often it refunded.

The sweeper read every FAILED (and stuck CANCELLING) session's escrow at every sweep, and one the
chain had closed stayed FAILED, so the reads grew with every failure. Such a session now has a
check time (its expiry at first); the sessions already in those states start from theirs.

Revision ID: escrow_0002
Revises: escrow_0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "escrow_0002"
down_revision: str | None = "escrow_0001"
branch_labels: Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SESSIONS = "escrow_sessions"
INDEX = "ix_escrow_sessions_refund_check_at"
# The model's predicate (``models.REFUND_CHECK_PENDING``): the sessions the sweeper waits on.
PENDING = "refund_check_at IS NOT NULL"


def upgrade() -> None:
    op.add_column(SESSIONS, sa.Column("refund_check_at", sa.DateTime(timezone=True)))
    op.add_column(
        SESSIONS, sa.Column("refunds_sent", sa.Integer, nullable=False, server_default="0")
    )
    op.execute(
        f"UPDATE {SESSIONS} SET refund_check_at = expiry "  # noqa: S608 - constant names
        "WHERE state IN ('FAILED', 'CANCELLING')"
    )
    op.create_index(
        INDEX,
        SESSIONS,
        ["refund_check_at"],
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name=SESSIONS)
    op.drop_column(SESSIONS, "refunds_sent")
    op.drop_column(SESSIONS, "refund_check_at")
