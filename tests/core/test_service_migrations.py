"""Every service's migration branch runs from empty to head and back, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from chargenet.cli.commands.run import SERVICES
from chargenet.core.db import Database
from chargenet.core.db.migrations import downgrade_to_base, service_versions, upgrade_to_head


@pytest.mark.parametrize("service", SERVICES)
def test_service_migrations_from_empty_to_head_and_back(database: Database, service: str) -> None:
    versions = service_versions(service)
    upgrade_to_head(database, versions)
    tables = set(sa.inspect(database.engine).get_table_names())
    assert {"outbox", "inbox"} <= tables
    upgrade_to_head(database, versions)  # idempotent
    downgrade_to_base(database, versions)
    assert set(sa.inspect(database.engine).get_table_names()) <= {"alembic_version"}
