"""A pooled PostgreSQL connection is pinged before use only after it sat idle: one the server
dropped meanwhile is replaced unseen, and one in steady use costs no round trip. ``among``
selects by a list on both backends. Disposing waits for a worker thread's transaction."""

from __future__ import annotations

import threading
from contextlib import ExitStack

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from chargenet.core.db import Database
from chargenet.core.db.database import among
from chargenet.core.settings import CoreSettings


def _backend(db: Database) -> int:
    with db.session() as session:
        pid: int = session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    return pid


def _as_admin(postgres_url: str, statement: str, **params: object) -> object:
    """One statement on the server's admin database, outside any test database's pool."""
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            return connection.execute(sa.text(statement), params).scalar_one()
    finally:
        admin.dispose()


def _terminate(postgres_url: str, pid: int) -> None:
    _as_admin(postgres_url, "SELECT pg_terminate_backend(:pid)", pid=pid)


def test_a_connection_the_server_dropped_while_idle_is_replaced_before_use(
    postgres_url: str, postgres_database: str
) -> None:
    db = Database(postgres_database, idle_ping_seconds=0.0)  # every reuse counts as idle
    try:
        dropped = _backend(db)
        _terminate(postgres_url, dropped)
        assert _backend(db) != dropped  # no error: the ping found it dead, the pool replaced it
    finally:
        db.dispose()


def test_a_connection_in_steady_use_is_not_pinged(
    postgres_url: str, postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(postgres_database)
    pings: list[object] = []
    monkeypatch.setattr(db.engine.dialect, "do_ping", pings.append)
    try:
        first = _backend(db)
        assert _backend(db) == first and pings == []
        # So a server that dies under it fails that one transaction, and the caller's retry
        # gets a new connection.
        _terminate(postgres_url, first)
        with pytest.raises(DBAPIError):
            _backend(db)
        assert _backend(db) != first
    finally:
        db.dispose()


def test_the_pool_keeps_as_many_connections_as_the_settings_say(postgres_database: str) -> None:
    """A load that needs N connections at once, with N kept, reuses them: a connection beyond
    the kept ones would be closed on return and opened anew (a server process) every time."""
    settings = CoreSettings(database_url=postgres_database, database_pool_size=8)
    db = Database.from_settings(settings)

    def backends_at_once() -> set[int]:
        with ExitStack() as stack:
            connections = [stack.enter_context(db.engine.connect()) for _ in range(8)]
            return {c.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() for c in connections}

    try:
        first = backends_at_once()
        assert backends_at_once() == first and len(first) == 8
    finally:
        db.dispose()


def test_dispose_waits_for_a_worker_threads_transaction_and_closes_its_connection(
    postgres_url: str, postgres_database: str
) -> None:
    """Disposed under a thread's open transaction, the pool would get that connection back
    after it closed, and it would stay open on the server until the collector found it."""
    db = Database(postgres_database)
    inside = threading.Event()

    def work() -> None:
        with db.session() as session:
            session.execute(sa.text("SELECT 1"))
            inside.set()
            session.execute(sa.text("SELECT pg_sleep(0.3)"))

    worker = threading.Thread(target=work)
    worker.start()
    assert inside.wait(10)
    db.dispose()
    assert not worker.is_alive()  # dispose returned only once the work had finished
    worker.join()
    name = sa.make_url(postgres_database).database
    count = _as_admin(
        postgres_url, "SELECT count(*) FROM pg_stat_activity WHERE datname = :name", name=name
    )
    assert count == 0


def test_among_selects_the_rows_whose_key_is_in_the_list_on_both_backends(
    database: Database,
) -> None:
    metadata = sa.MetaData()
    table = sa.Table(
        "keyed",
        metadata,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    metadata.create_all(database.engine)
    by_key = sa.select(table.c.key).where(among(table.c.key, "keys")).order_by(table.c.key)
    by_seq = sa.select(table.c.key).where(among(table.c.seq, "seqs")).order_by(table.c.key)
    with database.session() as session:
        session.execute(table.insert(), [{"key": f"k{n}", "seq": n} for n in range(5)])
        # The statement is built once and runs with lists of any length, the empty one too.
        assert session.scalars(by_key, {"keys": ["k1", "k3", "absent"]}).all() == ["k1", "k3"]
        assert session.scalars(by_key, {"keys": ["k4"]}).all() == ["k4"]
        assert session.scalars(by_key, {"keys": []}).all() == []
        assert session.scalars(by_seq, {"seqs": [0, 2, 2**62]}).all() == ["k0", "k2"]
        # A key that only looks like SQL is a value like any other.
        assert session.scalars(by_key, {"keys": ["k1') OR ('1'='1"]}).all() == []
