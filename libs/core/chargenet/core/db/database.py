"""One engine and session factory per service database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from chargenet.core.settings import CoreSettings


def insert_new(table: sa.Table) -> dict[str, sa.Insert]:
    """An insert that leaves a row whose key is already there, by dialect name (each backend
    spells ``ON CONFLICT DO NOTHING`` through its own dialect). Built once, executed with a list
    of rows: one multi-row insert whose compiled form is reused."""
    return {
        "postgresql": postgresql.insert(table).on_conflict_do_nothing(),
        "sqlite": sqlite.insert(table).on_conflict_do_nothing(),
    }


class _Among(FunctionElement[Any]):
    """``column IN (the list bound as key)``; see ``among``."""

    name = "among"
    inherit_cache = True


def among(
    column: sa.ColumnElement[Any] | QueryableAttribute[Any], key: str
) -> sa.ColumnElement[Any]:
    """``column`` is one of the list bound as ``key`` (``{key: [...]}`` at execution).

    On PostgreSQL the list goes as one array (``column = ANY(:key)``); elsewhere it is an
    expanding ``IN``. An expanding ``IN`` renders a placeholder and a type cast per element at
    every execution: for the 200 sessions a wallet's streams watch, 3.1-3.4 ms of the caller's
    CPU a query against 0.9 ms for the array (``bench/among.py``).
    """
    return _Among(column, sa.bindparam(key))


@compiles(_Among)
def _among_in(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    column, values = element.clauses
    return compiler.process(column.in_(sa.bindparam(values.key, expanding=True)), **kw)


@compiles(_Among, "postgresql")
def _among_any(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    column, values = element.clauses
    array = sa.bindparam(values.key, type_=postgresql.ARRAY(column.type))
    return compiler.process(column == sa.any_(array), **kw)


#: A pooled connection idle longer than this is pinged before use (see ``ping_when_idle``).
IDLE_PING_SECONDS = 10.0


def create_engine(
    url: str, *, idle_ping_seconds: float = IDLE_PING_SECONDS, **kwargs: Any
) -> Engine:
    """An engine with the settings each backend needs to behave like the other.

    SQLite gets a busy timeout and WAL so the embedded default's threads do not trip over each
    other, foreign keys on (off by default there), and an in-memory database shared by every thread
    (``StaticPool``) because otherwise each connection would see its own empty database. A server's
    pooled connections are pinged after ``idle_ping_seconds`` idle (see ``ping_when_idle``).
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
    engine = sa.create_engine(url, **kwargs)
    ping_when_idle(engine, idle_ping_seconds)
    return engine


def ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Ping a pooled connection before use only if it sat idle in the pool a while.

    The server may have dropped it meanwhile (a restart, an idle timeout on the way): such a
    connection is replaced before the caller sees it. SQLAlchemy's ``pool_pre_ping`` pings on
    every checkout instead, one more round trip in every transaction of every request and event
    (~12 % of the escrow's time under load when it was measured). A connection in steady use is
    not pinged: if the server dies under it, its one transaction fails, the pool replaces every
    connection it had, and the caller's retry (a consumer's redelivery, a client's) gets a new one.
    """

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return  # new, or in steady use
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out another (a new one if need be).
            raise sa.exc.DisconnectionError(f"an idle connection was dropped: {error}") from error


class Database:
    """A service's database: the engine and a ``session()`` unit of transaction."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> Database:
        """The service's database, its pool sized by the settings (a server's; SQLite's is
        not a pool of connections to a server)."""
        if settings.database_url.startswith("sqlite"):
            return cls(settings.database_url)
        return cls(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )

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

    def dispose(self, wait_seconds: float = 5.0) -> None:
        """Close the pool's connections.

        A connection that a worker thread still holds (a call whose caller gave up, work in
        flight at shutdown) would go back to the closed pool and stay open until the garbage
        collector found it, so in-flight work gets ``wait_seconds`` to hand it back first."""
        deadline = time.monotonic() + wait_seconds
        while _checked_out(self.engine) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.engine.dispose()


def _checked_out(engine: Engine) -> int:
    """Connections in use (a queue pool counts them; SQLite's pools keep none apart)."""
    pool = engine.pool
    return pool.checkedout() if isinstance(pool, sa.pool.QueuePool) else 0
