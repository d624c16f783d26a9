"""Invoicing: the per-CPO number series, invoices, refused settlements.

Revision ID: invoicing_0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "invoicing_0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = ("invoicing",)
depends_on: str | Sequence[str] | None = "core_0001"

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "invoicing_counters",
        sa.Column("cpo_id", sa.String(64), primary_key=True),
        sa.Column("last_number", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "invoicing_invoices",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("number", sa.String(100), nullable=False, unique=True),
        sa.Column("cpo_id", sa.String(64), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("driver_id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False, unique=True),
        sa.Column("issue_date", sa.Date, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total_excl_vat", sa.BigInteger, nullable=False),
        sa.Column("total_vat", sa.BigInteger, nullable=False),
        sa.Column("total_incl_vat", sa.BigInteger, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("cpo_id", "sequence", name="uq_invoice_cpo_sequence"),
    )
    op.create_index("ix_invoicing_invoices_cpo_id", "invoicing_invoices", ["cpo_id"])
    op.create_index("ix_invoicing_invoices_driver_id", "invoicing_invoices", ["driver_id"])
    op.create_table(
        "invoicing_refused",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("cpo_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("invoicing_refused")
    op.drop_index("ix_invoicing_invoices_driver_id", table_name="invoicing_invoices")
    op.drop_index("ix_invoicing_invoices_cpo_id", table_name="invoicing_invoices")
    op.drop_table("invoicing_invoices")
    op.drop_table("invoicing_counters")
