"""The bus contract, run against the in-process bus and against the real Kafka broker."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from chargenet.core.bus import EventBus
from chargenet.core.bus.base import MAX_HANDLER_ATTEMPTS
from chargenet.core.bus.kafka import KafkaBus
from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.db import Database
from chargenet.core.db.inbox import apply_once
from chargenet.core.db.migrations import upgrade_to_head
from chargenet.core.envelope import Envelope
from chargenet.core.errors import DependencyUnavailable

TOPIC = "bus-suite"
EVENTS = 10_000
KEYS = 200
PARTITIONS = 8


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus(request: pytest.FixtureRequest) -> Iterator[EventBus]:
    if request.param == "memory":
        bus: EventBus = InMemoryBus(partitions=PARTITIONS)
    else:
        prefix = request.getfixturevalue("topic_prefix")
        bus = KafkaBus(
            request.getfixturevalue("kafka_bootstrap"), topic_prefix=prefix, partitions=PARTITIONS
        )
    bus.ensure_topics([TOPIC])
    yield bus
    bus.close()


def event(key: str, seq: int) -> Envelope:
    return Envelope(type="chargenet.test.tick.v1", source="tests", subject=key, data={"seq": seq})


class Recorder:
    """A consumer that applies each event once through the inbox and records what it saw."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.lock = threading.Lock()
        self.applied: dict[str, list[int]] = defaultdict(list)
        self.deliveries = 0
        self.duplicates = 0

    def handle(self, envelope: Envelope) -> None:
        def apply(_session: Session, env: Envelope) -> None:
            with self.lock:
                self.applied[env.subject].append(int(env.data["seq"]))

        fresh = apply_once(self.db, "bus-suite", envelope, apply)
        with self.lock:
            self.deliveries += 1
            self.duplicates += not fresh

    def applied_count(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.applied.values())

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.applied_count() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.applied_count()} of {count} events applied")
            time.sleep(0.05)


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    db = Database(f"sqlite:///{tmp_path}/inbox.db")
    upgrade_to_head(db)
    yield Recorder(db)
    db.dispose()


@pytest.mark.slow
def test_keyed_events_survive_a_consumer_crash_in_order_once(
    bus: EventBus, recorder: Recorder
) -> None:
    group = "suite-group"
    first = bus.subscribe([TOPIC], group, recorder.handle)
    second = bus.subscribe([TOPIC], group, recorder.handle)
    assert first.wait_assigned() and second.wait_assigned()

    sent: list[Envelope] = []
    for seq in range(EVENTS // KEYS):
        for k in range(KEYS):
            envelope = event(f"key-{k}", seq)
            sent.append(envelope)
            bus.publish(TOPIC, envelope)
    bus.flush()

    # Kill one member mid-stream without committing what it was doing, as a crash would.
    recorder.wait_for(EVENTS // 3, timeout=120)
    first.close(commit=False)
    recorder.wait_for(EVENTS // 2, timeout=120)
    restarted = bus.subscribe([TOPIC], group, recorder.handle)
    recorder.wait_for(EVENTS, timeout=180)

    # A redelivery of events already applied (what a relay or a rebalance can cause).
    for envelope in sent[:100]:
        bus.publish(TOPIC, envelope)
    bus.flush()
    deadline = time.monotonic() + 60
    while recorder.deliveries < EVENTS + 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    restarted.close()
    second.close()

    assert recorder.applied_count() == EVENTS, "an event was lost or applied twice"
    for k in range(KEYS):
        assert recorder.applied[f"key-{k}"] == list(range(EVENTS // KEYS)), f"key-{k} reordered"
    assert recorder.duplicates >= 100, "the redelivered events were not dropped by the inbox"


def test_every_group_sees_every_event(bus: EventBus, recorder: Recorder) -> None:
    seen: dict[str, list[int]] = {"a": [], "b": []}
    lock = threading.Lock()

    def collector(name: str) -> Callable[[Envelope], None]:
        def handle(envelope: Envelope) -> None:
            with lock:
                seen[name].append(int(envelope.data["seq"]))

        return handle

    subs = [bus.subscribe([TOPIC], f"group-{n}", collector(n)) for n in ("a", "b")]
    assert all(s.wait_assigned() for s in subs)
    for seq in range(50):
        bus.publish(TOPIC, event("one-key", seq))
    bus.flush()
    deadline = time.monotonic() + 60
    while min(len(v) for v in seen.values()) < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    for s in subs:
        s.close()
    assert seen["a"] == list(range(50))
    assert seen["b"] == list(range(50))


def test_a_failing_handler_is_retried_then_dead_lettered(bus: EventBus) -> None:
    attempts: list[str] = []
    dead: list[Envelope] = []

    def flaky(envelope: Envelope) -> None:
        attempts.append(envelope.id)
        raise RuntimeError("poison")

    bus.ensure_topics([TOPIC + ".dlq"])
    dlq = bus.subscribe([TOPIC + ".dlq"], "dlq-reader", dead.append)
    consumer = bus.subscribe([TOPIC], "poisoned", flaky)
    assert consumer.wait_assigned() and dlq.wait_assigned()
    poison = event("bad", 0)
    bus.publish(TOPIC, poison)
    bus.flush()
    deadline = time.monotonic() + 60
    while not dead and time.monotonic() < deadline:
        time.sleep(0.05)
    consumer.close()
    dlq.close()
    assert [e.id for e in dead] == [poison.id]
    assert attempts.count(poison.id) == 5


def test_an_event_whose_handler_waits_for_a_dependency_is_not_dead_lettered(
    bus: EventBus,
) -> None:
    """The chain node (or the database) down for longer than the poison limit allows: the event
    is fine, so it waits and is handled once the dependency answers, in order."""
    tries: list[str] = []
    handled: list[int] = []
    dead: list[Envelope] = []

    def needs_the_node(envelope: Envelope) -> None:
        tries.append(envelope.id)
        if len(tries) <= MAX_HANDLER_ATTEMPTS + 1:
            raise DependencyUnavailable("the node did not answer")
        handled.append(int(envelope.data["seq"]))

    bus.ensure_topics([TOPIC + ".dlq"])
    dlq = bus.subscribe([TOPIC + ".dlq"], "dlq-reader", dead.append)
    consumer = bus.subscribe([TOPIC], "waits", needs_the_node)
    assert consumer.wait_assigned() and dlq.wait_assigned()
    for seq in range(2):
        bus.publish(TOPIC, event("same-key", seq))
    bus.flush()
    deadline = time.monotonic() + 60
    while len(handled) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    consumer.close()
    dlq.close()
    assert handled == [0, 1]
    assert dead == []
    assert len(tries) == MAX_HANDLER_ATTEMPTS + 3  # the first event's waits, then both handled


def test_a_subscription_for_some_types_passes_over_the_rest_and_commits_them(
    bus: EventBus,
) -> None:
    wanted, other = "chargenet.test.wanted.v1", "chargenet.test.other.v1"
    seen: list[int] = []
    lock = threading.Lock()

    def handle(envelope: Envelope) -> None:
        assert envelope.type == wanted
        with lock:
            seen.append(int(envelope.data["seq"]))

    def publish_mixed(first: int) -> None:
        # Wanted and unwanted interleaved on one key, the unwanted ones last.
        for seq in range(first, first + 20):
            kind = wanted if seq % 2 == 0 else other
            bus.publish(TOPIC, Envelope(type=kind, source="t", subject="k", data={"seq": seq}))
        bus.flush()

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 60
        while len(seen) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    consumer = bus.subscribe([TOPIC], "typed", handle, types={wanted})
    assert consumer.wait_assigned()
    publish_mixed(0)
    wait_for(10)
    consumer.close()  # commits what was done, the passed-over events included
    assert seen == list(range(0, 20, 2))
    again = bus.subscribe([TOPIC], "typed", handle, types=[wanted])
    assert again.wait_assigned()
    publish_mixed(20)
    wait_for(20)
    again.close()
    assert seen == list(range(0, 40, 2)), "a passed-over or handled event came back"
