"""Every migration chain runs from empty to head and back, on SQLite and on PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from chargenet.core.db import Database
from chargenet.core.db.migrations import downgrade_to_base, upgrade_to_head
from chargenet.core.db.tables import CoreBase


def test_core_migrations_from_empty_to_head_and_back(database: Database) -> None:
    upgrade_to_head(database)
    tables = set(sa.inspect(database.engine).get_table_names())
    assert {"outbox", "inbox", "alembic_version"} <= tables
    upgrade_to_head(database)  # a second run is a no-op
    downgrade_to_base(database)
    assert set(sa.inspect(database.engine).get_table_names()) <= {"alembic_version"}


def test_migrations_match_the_models(database: Database) -> None:
    upgrade_to_head(database)
    inspector = sa.inspect(database.engine)
    for table in CoreBase.metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name
