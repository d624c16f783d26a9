"""The outbox: nothing published for a rolled-back change; a committed one takes effect once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.db import Database, InboxMessage, OutboxMessage
from chargenet.core.db.inbox import apply_once
from chargenet.core.db.migrations import upgrade_to_head
from chargenet.core.db.outbox import OutboxRelay, unit_of_work
from chargenet.core.db.retention import Pruned, Retention, prune
from chargenet.core.db.tables import utcnow
from chargenet.core.envelope import Envelope
from chargenet.core.events import SessionCancelled, Topic


@pytest.fixture
def db(database: Database) -> Iterator[Database]:
    upgrade_to_head(database)
    yield database


class RelayCrash(RuntimeError):
    pass


def cancelled(session_id: str) -> SessionCancelled:
    return SessionCancelled(session_id=session_id, reason="test")


def test_a_rolled_back_change_publishes_nothing(db: Database) -> None:
    bus = InMemoryBus()
    with pytest.raises(ZeroDivisionError), unit_of_work(db, "tests") as uow:
        uow.emit(cancelled("s-1"), subject="s-1")
        _ = 1 / 0
    relay = OutboxRelay(db, bus)
    assert relay.drain() == 0
    assert bus.events(Topic.SESSIONS) == []
    assert relay.pending() == 0


def test_a_committed_change_takes_effect_once_despite_a_relay_crash(db: Database) -> None:
    bus = InMemoryBus()
    with unit_of_work(db, "tests") as uow:
        emitted = uow.emit(cancelled("s-2"), subject="s-2")

    def crash(_rows: object) -> None:
        raise RelayCrash("killed between publish and mark")

    with pytest.raises(RelayCrash):
        OutboxRelay(db, bus, after_publish=crash).relay_once()
    # The bus has the event, the row is still unpublished: the next relay sends it again.
    assert [e.id for e in bus.events(Topic.SESSIONS)] == [emitted.id]
    relay = OutboxRelay(db, bus)
    assert relay.pending() == 1
    assert relay.drain() == 1
    assert relay.drain() == 0, "a marked event was published again"
    deliveries = bus.events(Topic.SESSIONS)
    assert [e.id for e in deliveries] == [emitted.id, emitted.id]

    # The consumer's inbox turns the at-least-once delivery into one effect.
    effects: list[str] = []

    def apply(_session: Session, envelope: Envelope) -> None:
        effects.append(envelope.payload(SessionCancelled).session_id)

    results = [apply_once(db, "invoicing", envelope, apply) for envelope in deliveries]
    assert results == [True, False]
    assert effects == ["s-2"]


def test_events_of_one_transaction_are_published_in_order(db: Database) -> None:
    bus = InMemoryBus()
    with unit_of_work(db, "tests") as uow:
        ids = [uow.emit(cancelled("s-3"), subject="s-3").id for _ in range(5)]
    OutboxRelay(db, bus).drain()
    assert [e.id for e in bus.events(Topic.SESSIONS)] == ids


def test_the_background_relay_publishes_after_commit(db: Database) -> None:
    bus = InMemoryBus()
    relay = OutboxRelay(db, bus)
    relay.start(interval=0.01)
    try:
        with unit_of_work(db, "tests") as uow:
            emitted = uow.emit(cancelled("s-4"), subject="s-4")
        relay.notify()
        for _ in range(500):
            if bus.events(Topic.SESSIONS):
                break
            time.sleep(0.01)
    finally:
        relay.stop()
    assert [e.id for e in bus.events(Topic.SESSIONS)] == [emitted.id]


def test_rows_past_their_retention_are_pruned_and_nothing_unpublished_is(db: Database) -> None:
    bus = InMemoryBus()
    with unit_of_work(db, "tests") as uow:
        for n in range(5):
            uow.emit(cancelled(f"old-{n}"), subject=f"old-{n}")
    OutboxRelay(db, bus).drain()  # published now
    with unit_of_work(db, "tests") as uow:
        waiting = uow.emit(cancelled("new"), subject="new")  # never published
    for envelope in bus.events(Topic.SESSIONS):
        apply_once(db, "invoicing", envelope, lambda _session, _envelope: None)
    retention = Retention(outbox=timedelta(hours=1), inbox=timedelta(hours=2))

    def remaining() -> tuple[list[str], int]:
        with db.session() as session:
            outbox = session.scalars(sa.select(OutboxMessage.event_id)).all()
            inbox = session.scalar(sa.select(sa.func.count()).select_from(InboxMessage))
        return list(outbox), int(inbox or 0)

    # Within both retentions: everything stays.
    assert prune(db, retention, now=utcnow() + timedelta(minutes=30)) == Pruned(0, 0)
    # Past the outbox's (a batch per transaction), not the inbox's: the unpublished row stays.
    later = utcnow() + timedelta(minutes=90)
    assert prune(db, retention, now=later, batch=2, max_batches=2) == Pruned(4, 0, more=True)
    assert prune(db, retention, now=later, batch=2, max_batches=2) == Pruned(1, 0)
    assert remaining() == ([waiting.id], 5)
    assert prune(db, retention, now=utcnow() + timedelta(hours=3), batch=2) == Pruned(0, 5)
    assert remaining() == ([waiting.id], 0)


class _SlowAcknowledgement(InMemoryBus):
    """A replica's producer: its events reach the broker only when it flushes, and its flush
    waits for ``gate`` (the broker's acknowledgement taking a while)."""

    def __init__(self, broker: InMemoryBus, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.broker, self.gate = broker, gate
        self.buffered: list[tuple[str, Envelope]] = []
        self.flushing = threading.Event()

    def publish(self, topic: str, envelope: Envelope) -> None:
        self.buffered.append((topic, envelope))

    def flush(self, timeout: float = 30.0) -> None:
        self.flushing.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        for topic, envelope in self.buffered:
            self.broker.publish(topic, envelope)
        self.buffered.clear()


def test_relays_in_two_replicas_keep_one_keys_order(postgres_database: str) -> None:
    """Replica A's relay holds a session's event while the broker acknowledges it; the next event
    of that session, committed meanwhile, must not reach the topic first through replica B."""
    db = Database(postgres_database)
    upgrade_to_head(db)
    broker, gate = InMemoryBus(), threading.Event()
    slow, quick = _SlowAcknowledgement(broker, gate), _SlowAcknowledgement(broker)

    def emit(reason: str) -> str:
        with unit_of_work(db, "tests") as uow:
            event = SessionCancelled(session_id="s-1", reason=reason)
            return uow.emit(event, subject="s-1").id

    try:
        first = emit("first")
        replica_a = threading.Thread(target=OutboxRelay(db, slow).relay_once)
        replica_a.start()
        assert slow.flushing.wait(10)
        second = emit("second")
        replica_b = threading.Thread(target=OutboxRelay(db, quick).relay_once)
        replica_b.start()
        time.sleep(0.3)  # replica B at work meanwhile (it used to publish the second event now)
        gate.set()
        replica_a.join(10)
        replica_b.join(10)
        assert [e.id for e in broker.events(Topic.SESSIONS)] == [first, second]
    finally:
        gate.set()
        db.dispose()
