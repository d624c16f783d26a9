"""A consumer's batch in one transaction: on the in-process bus and on Kafka, on SQLite and on
PostgreSQL. Each applied event leaves an outbox row (the effect a real consumer would have), so
what a failed batch's rollback took back, and what a redelivery did not repeat, is in the
database, not in the test's memory."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence

import pytest
import sqlalchemy as sa
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from confluent_kafka import Consumer as KafkaConsumer
from sqlalchemy.orm import Session

from chargenet.core.bus import EventBus
from chargenet.core.bus.kafka import KafkaBus
from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.db import Database, OutboxMessage
from chargenet.core.db.inbox import apply_batch_once, apply_once
from chargenet.core.db.migrations import upgrade_to_head
from chargenet.core.db.outbox import add_to_outbox
from chargenet.core.envelope import Envelope

TOPIC = "batch-suite"
CONSUMER = "batch-suite"


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus(request: pytest.FixtureRequest) -> Iterator[EventBus]:
    if request.param == "memory":
        bus: EventBus = InMemoryBus(partitions=4)
    else:
        bus = KafkaBus(
            request.getfixturevalue("kafka_bootstrap"),
            topic_prefix=request.getfixturevalue("topic_prefix"),
            partitions=4,
        )
    bus.ensure_topics([TOPIC, TOPIC + ".dlq"])
    yield bus
    bus.close()


@pytest.fixture
def db(database: Database) -> Database:
    upgrade_to_head(database)
    return database


def event(key: str, seq: int, *, poison: bool = False) -> Envelope:
    return Envelope(
        type="chargenet.test.tick.v1",
        source="tests",
        subject=key,
        data={"seq": seq, "poison": poison},
    )


def effect(session: Session, envelope: Envelope) -> None:
    """The event's effect: one outbox row naming it (rolled back with its transaction)."""
    if envelope.data["poison"]:
        raise ValueError(f"poison event {envelope.id}")
    add_to_outbox(
        session,
        "effects",
        Envelope(
            type="chargenet.test.applied.v1",
            source="tests",
            subject=envelope.subject,
            data={"of": envelope.id, "seq": envelope.data["seq"]},
        ),
    )


class Consumer:
    """Both paths of one consumer: the batch in one transaction, and event by event."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.lock = threading.Lock()
        self.batches: list[int] = []  # sizes of the batches that committed
        self.delivered = 0  # events handed to either path, applied or not
        self.attempts: dict[str, int] = {}

    def batch(self, envelopes: Sequence[Envelope]) -> None:
        def apply(session: Session, fresh: list[Envelope]) -> None:
            for envelope in fresh:
                effect(session, envelope)

        with self.lock:
            self.delivered += len(envelopes)
        apply_batch_once(self.db, CONSUMER, envelopes, apply)
        with self.lock:
            self.batches.append(len(envelopes))

    def one(self, envelope: Envelope) -> None:
        with self.lock:
            self.delivered += 1
            self.attempts[envelope.id] = self.attempts.get(envelope.id, 0) + 1
        apply_once(self.db, CONSUMER, envelope, effect)

    def progress(self, sent: Sequence[Envelope], logged: dict[str, str]) -> str:
        with self.lock:
            delivered, batches, singles = self.delivered, list(self.batches), len(self.attempts)
        effects = self.effects()
        applied = set(effects)
        missing = [
            (e.subject, e.data["seq"], logged.get(e.id, "not in the log"))
            for e in sent
            if (e.subject, e.data["seq"]) not in applied
        ]
        return (
            f"{delivered} events delivered, {len(effects)} applied, batches {batches}, "
            f"{singles} handled one by one, not applied (key, seq, partition@offset): "
            f"{missing[:20]}"
        )

    def effects(self) -> list[tuple[str, int]]:
        """(key, seq) of every effect, in commit order."""
        with self.db.session() as session:
            rows = session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.seq))
            return [(r.key, int(Envelope.from_bytes(r.payload).data["seq"])) for r in rows]


def wait_until(
    condition: Callable[[], bool],
    consumer: Consumer,
    sent: Sequence[Envelope],
    bus: EventBus,
    timeout: float = 60.0,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            # What the consumer got, and where Kafka holds what it did not, tells a send that
            # was lost from a consumer that skipped or stalled (CI twice saw 3 of 200 events
            # never delivered: sends lost to a new topic, see test_kafka_new_topic.py).
            progress = consumer.progress(sent, logged(bus, TOPIC))
            raise AssertionError(f"timed out: {progress}")
        time.sleep(0.05)


def logged(bus: EventBus, topic: str) -> dict[str, str]:
    """Where each event of the topic sits in Kafka's log (id -> "partition@offset"), read by a
    consumer of its own from the beginning; empty for the in-process bus."""
    if not isinstance(bus, KafkaBus):
        return {}
    name = bus.topic_prefix + topic
    reader = KafkaConsumer(
        {
            "bootstrap.servers": bus.bootstrap_servers,
            "group.id": group(),
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            **bus.security,
        }
    )
    partitions = reader.list_topics(name, timeout=10).topics[name].partitions
    reader.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
    found: dict[str, str] = {}
    ended: set[int] = set()
    deadline = time.monotonic() + 20
    while len(ended) < len(partitions) and time.monotonic() < deadline:
        message = reader.poll(0.5)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                ended.add(message.partition() or 0)
            continue
        envelope = Envelope.from_bytes(message.value() or b"")
        found[envelope.id] = f"{message.partition()}@{message.offset()}"
    reader.close()
    return found


def group() -> str:
    return f"batch-{uuid.uuid4().hex[:8]}"


def test_a_batch_applies_once_in_key_order_and_a_redelivered_batch_changes_nothing(
    bus: EventBus, db: Database
) -> None:
    consumer = Consumer(db)
    sent = [event(f"key-{k}", seq) for seq in range(10) for k in range(20)]
    for envelope in sent:  # all waiting before the consumer starts: they come in batches
        bus.publish(TOPIC, envelope)
    bus.flush()
    subscription = bus.subscribe([TOPIC], group(), consumer.one, batch_handler=consumer.batch)
    assert subscription.wait_assigned()
    wait_until(lambda: len(consumer.effects()) == len(sent), consumer, sent, bus)
    assert max(consumer.batches) > 1, "the events were not handed over as batches"
    assert not consumer.attempts, "a batch fell back to event by event"

    # A relay that re-publishes (same ids), as one batch: the inbox drops all of it.
    for envelope in sent[:100]:
        bus.publish(TOPIC, envelope)
    bus.flush()
    wait_until(lambda: consumer.delivered >= len(sent) + 100, consumer, sent, bus)
    subscription.close()

    effects = consumer.effects()
    assert len(effects) == len(sent), "an event was applied twice or lost"
    for k in range(20):
        assert [seq for key, seq in effects if key == f"key-{k}"] == list(range(10))


def test_a_poison_event_in_a_batch_is_dead_lettered_alone_and_the_rest_apply(
    bus: EventBus, db: Database
) -> None:
    consumer = Consumer(db)
    poison = event("key-1", 3, poison=True)
    sent = [
        poison if (k, seq) == (1, 3) else event(f"key-{k}", seq)
        for seq in range(6)
        for k in (0, 1, 2)
    ]
    dead: list[Envelope] = []
    dlq = bus.subscribe([TOPIC + ".dlq"], group(), dead.append)
    for envelope in sent:
        bus.publish(TOPIC, envelope)
    bus.flush()
    subscription = bus.subscribe([TOPIC], group(), consumer.one, batch_handler=consumer.batch)
    assert subscription.wait_assigned() and dlq.wait_assigned()
    wait_until(lambda: bool(dead) and len(consumer.effects()) == len(sent) - 1, consumer, sent, bus)
    subscription.close()
    dlq.close()

    assert [e.id for e in dead] == [poison.id]
    assert consumer.attempts[poison.id] == 5, "the poison event was not retried alone"
    effects = consumer.effects()
    assert len(effects) == len(sent) - 1
    for k in (0, 2):
        assert [seq for key, seq in effects if key == f"key-{k}"] == list(range(6))
    # The poisoned key keeps its order around the dead-lettered event.
    assert [seq for key, seq in effects if key == "key-1"] == [0, 1, 2, 4, 5]


def test_apply_batch_once_skips_seen_ids_and_duplicates_within_the_batch(db: Database) -> None:
    first = [event("a", seq) for seq in range(3)]
    applied: list[list[int]] = []

    def apply(session: Session, fresh: list[Envelope]) -> None:
        applied.append([int(e.data["seq"]) for e in fresh])
        for envelope in fresh:
            effect(session, envelope)

    assert apply_batch_once(db, CONSUMER, first, apply) == first
    later = [event("a", 3), first[1], event("a", 4)]
    batch = [first[0], later[0], first[2], later[0], later[2]]
    assert apply_batch_once(db, CONSUMER, batch, apply) == [later[0], later[2]]
    assert apply_batch_once(db, CONSUMER, batch, apply) == []
    assert applied == [[0, 1, 2], [3, 4]]  # nothing left to apply: not called at all
    assert [seq for _, seq in Consumer(db).effects()] == [0, 1, 2, 3, 4]


def test_a_failed_batch_leaves_nothing_behind(db: Database) -> None:
    batch = [event("a", 0), event("a", 1, poison=True), event("a", 2)]

    def apply(session: Session, fresh: list[Envelope]) -> None:
        for envelope in fresh:
            effect(session, envelope)

    with pytest.raises(ValueError, match="poison"):
        apply_batch_once(db, CONSUMER, batch, apply)
    assert Consumer(db).effects() == []
    # Not recorded as processed either: the good ones still apply later.
    assert apply_batch_once(db, CONSUMER, [batch[0], batch[2]], apply) == [batch[0], batch[2]]


def test_two_deliveries_racing_apply_the_event_once(db: Database) -> None:
    """The second delivery waits on the first's inbox row and is passed over once it commits
    (the bus may hand one event to two consumers of a group during a rebalance)."""
    shared = event("a", 0)
    claimed = threading.Event()
    outcomes: dict[str, bool] = {}

    def slow(session: Session, envelope: Envelope) -> None:
        effect(session, envelope)
        session.flush()
        claimed.set()
        time.sleep(0.5)  # the other delivery arrives meanwhile

    def first() -> None:
        outcomes["first"] = apply_once(db, CONSUMER, shared, slow)

    thread = threading.Thread(target=first)
    thread.start()
    assert claimed.wait(10)
    outcomes["second"] = apply_once(db, CONSUMER, shared, effect)
    thread.join(10)

    assert outcomes == {"first": True, "second": False}
    assert [seq for _, seq in Consumer(db).effects()] == [0]
