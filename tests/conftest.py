"""Fixtures for the real components every cross-service test uses.

The components are started by ``scripts/components/components.sh up`` (``make dev-up``), which
exports ``CHARGENET_TEST_*``. A test that needs one is skipped when its variable is unset, unless
``CHARGENET_REQUIRE_COMPONENTS=1`` (set by ``make test`` and CI), where a missing component fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from web3 import Web3

from chargenet.core.chain import connect
from chargenet.core.db import Database


def _component(variable: str, what: str) -> str:
    value = os.environ.get(variable)
    if value:
        return value
    if os.environ.get("CHARGENET_REQUIRE_COMPONENTS") == "1":
        pytest.fail(f"{variable} is unset: start {what} with `make dev-up`")
    pytest.skip(f"{variable} unset: {what} not started (make dev-up)")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return _component("CHARGENET_TEST_KAFKA", "Kafka")


@dataclass(frozen=True)
class SecuredKafka:
    """The broker's listener over TLS that authenticates (SASL PLAIN, one user)."""

    bootstrap: str
    ca_file: str
    username: str
    password: str


@pytest.fixture(scope="session")
def secured_kafka() -> SecuredKafka:
    what = "Kafka's TLS and SASL listener"
    return SecuredKafka(
        *(
            _component(f"CHARGENET_TEST_KAFKA_{name}", what)
            for name in ("SASL", "CA_FILE", "SASL_USERNAME", "SASL_PASSWORD")
        )
    )


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _component("CHARGENET_TEST_POSTGRES_URL", "PostgreSQL")


@pytest.fixture(scope="session")
def rpc_url() -> str:
    return _component("CHARGENET_TEST_RPC_URL", "the Hardhat node")


@pytest.fixture(params=["in process", "node"])
def either_chain(request: pytest.FixtureRequest) -> Web3:
    """Both chains the services read: the in-process one and a JSON-RPC node (Hardhat)."""
    if request.param == "node":
        return connect(request.getfixturevalue("rpc_url"))
    return connect("inprocess://eth-tester")


@pytest.fixture
def topic_prefix() -> str:
    """A prefix that keeps one test's Kafka topics and groups apart from every other run's."""
    return f"t{uuid.uuid4().hex[:10]}."


@contextmanager
def fresh_postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the server of ``postgres_url``, dropped after."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with fresh_postgres_database(postgres_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/test.db"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Database]:
    """An empty database of each backend (PostgreSQL ones need the running server)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/test.db"
        db = Database(url)
        yield db
        db.dispose()
    else:
        url = request.getfixturevalue("postgres_database")
        db = Database(url)
        yield db
        db.dispose()
