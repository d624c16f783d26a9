"""A scratch PostgreSQL database for a benchmark: created, handed over, dropped."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from chargenet.core.db import Database


@contextmanager
def scratch_database(prefix: str) -> Iterator[Database]:
    """A new database on the server CHARGENET_TEST_POSTGRES_URL names, dropped afterwards."""
    url = os.environ["CHARGENET_TEST_POSTGRES_URL"]
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    db = Database(sa.make_url(url).set(database=name).render_as_string(hide_password=False))
    try:
        yield db
    finally:
        db.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
