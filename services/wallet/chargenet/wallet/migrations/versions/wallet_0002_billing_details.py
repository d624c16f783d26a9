"""Drivers' billing details: the buyer (name, postal address, country) of their invoices.

Revision ID: wallet_0002
Revises: wallet_0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "wallet_0002"
down_revision: str | None = "wallet_0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wallet_billing_details",
        sa.Column("driver_id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("street", sa.String(200), nullable=True),
        sa.Column("postcode", sa.String(20), nullable=True),
        sa.Column("city", sa.String(100), nullable=True),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("wallet_billing_details")
