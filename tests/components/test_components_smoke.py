"""Smoke tests for the real components started by scripts/components/components.sh.

The component addresses come from the shared fixtures in tests/conftest.py: a test skips only when
its CHARGENET_TEST_* variable is unset (and fails even then under CHARGENET_REQUIRE_COMPONENTS=1);
when the variable is set, a component that does not answer is a failure, never a skip.
Start them with:
    scripts/components/components.sh up && eval "$(scripts/components/components.sh env)"
"""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from eth_account import Account
from web3 import HTTPProvider, Web3
from web3.types import Wei

HARDHAT_CHAIN_ID = 31337
# Hardhat funds its default accounts with 10,000 ETH; far less would mean a different setup.
MIN_DEV_BALANCE_WEI = 1_000 * 10**18
MESSAGES = 24
DEADLINE_S = 30.0


@pytest.mark.kafka
def test_kafka_produce_consume_commit_round_trip(kafka_bootstrap: str) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:12]}"
    group = f"smoke-{uuid.uuid4().hex[:12]}"
    # A broker that is down must fail within seconds, not after librdkafka's default minute.
    timeouts: dict[str, str | int | float | bool] = {
        "socket.timeout.ms": 10_000,
        "bootstrap.servers": kafka_bootstrap,
    }

    producer = Producer({**timeouts, "acks": "all", "message.timeout.ms": 10_000})
    # The topic does not exist yet: this also proves auto-creation works.
    sent = {f"value-{i}".encode() for i in range(MESSAGES)}
    for i, value in enumerate(sorted(sent)):
        producer.produce(topic, key=f"key-{i % 5}".encode(), value=value)
    assert producer.flush(DEADLINE_S) == 0

    consumer = Consumer(
        {
            **timeouts,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: set[bytes] = set()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len(received) < MESSAGES and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=100, timeout=0.5):
                assert message.error() is None, message.error()
                payload = message.value()
                assert isinstance(payload, bytes)
                received.add(payload)
        assert received == sent
        consumer.commit(asynchronous=False)
        partitions = consumer.assignment()
        committed = consumer.committed(partitions, timeout=10)
        assert sum(max(tp.offset, 0) for tp in committed) == MESSAGES
        # The broker config makes 8 partitions per auto-created topic.
        assert {tp.partition for tp in partitions} == set(range(8))
    finally:
        consumer.close()

    admin = AdminClient(timeouts)
    fresh = Consumer({**timeouts, "group.id": group})
    try:
        stored = fresh.committed(
            [TopicPartition(topic, partition) for partition in range(8)], timeout=10
        )
        assert sum(max(tp.offset, 0) for tp in stored) == MESSAGES
    finally:
        fresh.close()
    for future in admin.delete_topics([topic], operation_timeout=10).values():
        future.result()


@pytest.mark.postgres
def test_postgres_answers_queries(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        row = conn.execute(
            "select current_database(), current_setting('server_version_num')::int"
        ).fetchone()
        assert row is not None
        database, version_num = row
        assert database == "postgres"
        assert version_num >= 150000
        # A write/read on a temporary table proves a usable server, not just an open port.
        conn.execute("create temporary table smoke (id bigint primary key, amount bigint not null)")
        conn.execute("insert into smoke values (1, 1500000), (2, 250)")
        assert conn.execute("select sum(amount) from smoke").fetchone() == (1_500_250,)


@pytest.mark.hardhat
def test_hardhat_node_chain_id_funds_and_automine(rpc_url: str) -> None:
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
    assert w3.eth.chain_id == HARDHAT_CHAIN_ID
    accounts = w3.eth.accounts
    assert len(accounts) == 20
    assert all(w3.eth.get_balance(a) >= MIN_DEV_BALANCE_WEI for a in accounts)
    # A fresh address, so tests sharing the node cannot change its balance under us.
    receiver = Account.create().address
    tx_hash = w3.eth.send_transaction({"from": accounts[0], "to": receiver, "value": Wei(1)})
    # Automine: the receipt exists at once, no block interval to wait for.
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
    assert receipt["status"] == 1
    assert w3.eth.get_balance(receiver) == 1
