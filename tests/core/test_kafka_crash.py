"""A consumer process SIGKILLed mid-stream on real Kafka: nothing lost, key order kept."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from chargenet.core.bus.kafka import KafkaBus
from chargenet.core.db import Database
from chargenet.core.db.migrations import upgrade_to_head
from chargenet.core.envelope import Envelope

WORKER = Path(__file__).with_name("kafka_worker.py")
TOPIC = "crash-suite"
EVENTS = 10_000
KEYS = 100


def start_worker(bootstrap: str, prefix: str, url: str) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), bootstrap, prefix, "crash-group", url, TOPIC],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "assigned"
    return worker


def stop(worker: subprocess.Popen[str]) -> None:
    """Reap a killed worker and close its pipe."""
    worker.wait(timeout=10)
    if worker.stdout is not None:
        worker.stdout.close()


def applied_count(db: Database) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM applied")).scalar_one())


def wait_for(db: Database, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while applied_count(db) < count:
        assert time.monotonic() < deadline, f"{applied_count(db)} of {count} applied"
        time.sleep(0.2)


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.slow
def test_a_killed_consumer_process_loses_nothing(
    kafka_bootstrap: str, topic_prefix: str, postgres_database: str
) -> None:
    url = postgres_database
    db = Database(url)
    upgrade_to_head(db)
    with db.engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE applied (position BIGSERIAL PRIMARY KEY,"
                " key VARCHAR(50) NOT NULL, seq INTEGER NOT NULL)"
            )
        )
    bus = KafkaBus(kafka_bootstrap, topic_prefix=topic_prefix, partitions=8)
    bus.ensure_topics([TOPIC])
    workers = [start_worker(kafka_bootstrap, topic_prefix, url) for _ in range(2)]
    try:
        for seq in range(EVENTS // KEYS):
            for k in range(KEYS):
                bus.publish(
                    TOPIC,
                    Envelope(
                        type="chargenet.test.tick.v1",
                        source="t",
                        subject=f"k{k}",
                        data={"seq": seq},
                    ),
                )
        bus.flush()
        wait_for(db, EVENTS // 4, timeout=120)
        workers[0].send_signal(signal.SIGKILL)
        stop(workers[0])
        workers[0] = start_worker(kafka_bootstrap, topic_prefix, url)
        wait_for(db, EVENTS, timeout=240)
        time.sleep(1)  # any late duplicate would show up now
    finally:
        for worker in workers:
            worker.kill()
            stop(worker)
        bus.close()

    per_key: dict[str, list[int]] = defaultdict(list)
    with db.engine.connect() as connection:
        for key, seq in connection.execute(
            sa.text("SELECT key, seq FROM applied ORDER BY position")
        ):
            per_key[key].append(seq)
    assert sum(len(v) for v in per_key.values()) == EVENTS, "lost or doubled"
    for k in range(KEYS):
        assert per_key[f"k{k}"] == list(range(EVENTS // KEYS)), f"k{k} out of order"
    db.dispose()
