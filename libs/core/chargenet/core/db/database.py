"""One engine and session factory per service database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool


def insert_new(table: sa.Table) -> dict[str, sa.Insert]:
    """An insert that leaves a row whose key is already there, by dialect name (each backend
    spells ``ON CONFLICT DO NOTHING`` through its own dialect). Built once, executed with a list
    of rows: one multi-row insert whose compiled form is reused."""
    return {
        "postgresql": postgresql.insert(table).on_conflict_do_nothing(),
        "sqlite": sqlite.insert(table).on_conflict_do_nothing(),
    }


def create_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings each backend needs to behave like the other.

    SQLite gets a busy timeout and WAL so the embedded default's threads do not trip over each
    other, foreign keys on (off by default there), and an in-memory database shared by every thread
    (``StaticPool``) because otherwise each connection would see its own empty database.
    """
    if url.startswith("sqlite"):
        connect_args = {"check_same_thread": False, "timeout": 30}
        if ":memory:" in url or url.rstrip("/") in {"sqlite:", "sqlite://"}:
            kwargs.setdefault("poolclass", StaticPool)
        engine = sa.create_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            if ":memory:" not in url:
                cursor.execute("PRAGMA journal_mode=WAL")
                # WAL with NORMAL sync is durable against a process crash (the failure we
                # design for in the embedded default) at a fraction of FULL's fsyncs.
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


class Database:
    """A service's database: the engine and a ``session()`` unit of transaction."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any exception."""
        with self._sessions() as session, session.begin():
            yield session

    def check(self) -> None:
        """Raise if the database does not answer (readiness and start-up checks)."""
        with self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def dispose(self) -> None:
        self.engine.dispose()
