"""The registry service SIGKILLed in the middle of a catch-up resumes without gaps or
duplicates (PostgreSQL, the real Hardhat node, the real ``chargenet.registry.main`` process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from chargenet.core.db import Database, OutboxMessage
from chargenet.registry.main import migrate
from chargenet.registry.models import Cursor
from tests.registry.conftest import (
    Chain,
    chain_log_ids,
    chain_stations,
    index_log_ids,
    index_stations,
    outbox_events,
)
from tests.registry.harness import register_many, station_id

pytestmark = [pytest.mark.hardhat, pytest.mark.postgres, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _cursor(db: Database) -> int | None:
    with db.session() as session:
        row = session.get(Cursor, 1)
        return None if row is None else row.block_number


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "chargenet.registry.main"],
            env={**os.environ, **env},
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


def _wait(db: Database, done: object, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        position = _cursor(db)
        if position is not None and done(position):  # type: ignore[operator]
            return position
        time.sleep(0.05)
    raise AssertionError("the indexer did not get there in time")


def test_killed_mid_catch_up_resumes_without_gaps_or_duplicates(
    chain: Chain, postgres_database: str, tmp_path: Path
) -> None:
    senders = list(chain.w3.eth.accounts)[2:8]
    first = chain.w3.eth.block_number + 1
    last = register_many(
        chain.w3,
        chain.deployment,
        [station_id(n, "DE*RST*E") for n in range(800)],
        senders=senders,
        per_block=10,  # 80 blocks: a catch-up that writes a few per transaction has a middle
    )
    assert last - first >= 75
    db = Database(postgres_database)
    migrate(db)
    env = {
        "CHARGENET_DATABASE_URL": postgres_database,
        "CHARGENET_CHAIN_RPC_URL": chain.url,
        "CHARGENET_REGISTRY_ADDRESS": chain.deployment.registry.address,
        "CHARGENET_REGISTRY_ESCROW_ADDRESS": chain.deployment.escrow.address,
        "CHARGENET_REGISTRY_START_BLOCK": str(chain.start_block),
        "CHARGENET_REGISTRY_CONFIRMATIONS": "0",
        # One block a step, so there is a "middle" to be killed in.
        "CHARGENET_REGISTRY_BATCH_BLOCKS": "1",
        "CHARGENET_REGISTRY_POLL_SECONDS": "0.1",
        "CHARGENET_HTTP_PORT": "0",
        "CHARGENET_LOG_LEVEL": "WARNING",
    }
    log = tmp_path / "registry.log"
    process = _start(env, log)
    try:
        killed_at = _wait(db, lambda n: first + 5 <= n < last - 10)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    # What the dead process left is a consistent prefix: exactly the logs up to its cursor.
    stopped_at = _cursor(db)
    assert stopped_at is not None and killed_at <= stopped_at < last
    assert index_log_ids(db) == chain_log_ids(chain, to_block=stopped_at)

    process = _start(env, log)
    try:
        _wait(db, lambda n: n >= last)
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert index_log_ids(db) == chain_log_ids(chain)  # no gap, no duplicate
    assert index_stations(db) == chain_stations(chain)
    events = outbox_events(db)
    registered = [e for e in events if e.type == "chargenet.station.registered.v1"]
    assert len(registered) == len({e.id for e in registered}) == len(chain_stations(chain))
    with db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == len(events)
    db.dispose()
