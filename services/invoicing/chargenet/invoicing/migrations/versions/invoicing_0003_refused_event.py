"""Invoicing: a refused settlement keeps its event, to be invoiced once its cause is fixed.

Revision ID: invoicing_0003
Revises: invoicing_0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "invoicing_0003"
down_revision: str | None = "invoicing_0002"
branch_labels: Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: a refusal recorded before this revision has no event to issue from.
    op.add_column("invoicing_refused", sa.Column("settled", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("invoicing_refused", "settled")
