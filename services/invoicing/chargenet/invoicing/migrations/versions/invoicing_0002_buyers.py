"""Invoicing: the buyer of each session, from its SessionRequested event.

Revision ID: invoicing_0002
Revises: invoicing_0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "invoicing_0002"
down_revision: str | None = "invoicing_0001"
branch_labels: Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "invoicing_buyers",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("driver_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("street", sa.String(200), nullable=True),
        sa.Column("postcode", sa.String(20), nullable=True),
        sa.Column("city", sa.String(100), nullable=True),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("invoicing_buyers")
