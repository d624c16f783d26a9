"""The transactional outbox: a state change and its events commit together; a relay publishes them.

Why: publishing to Kafka inside a database transaction can neither be rolled back with it nor be
made atomic with it. Writing the event into the same transaction as the change, then publishing
from the table, gives "published if and only if committed". The relay marks a row published only
after the bus acknowledged it, so a crash between the two re-publishes the same event (same id):
consumers drop it through the inbox, which makes the effect exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from chargenet.core.bus.base import EventBus
from chargenet.core.db.database import Database, among
from chargenet.core.db.retention import Retention, prune
from chargenet.core.db.tables import OutboxMessage, utcnow
from chargenet.core.envelope import Envelope, EventData, make_envelope
from chargenet.core.metrics import counter

log = logging.getLogger(__name__)
OUTBOX_REFUSED = counter(
    "chargenet_outbox_refused_events",
    "Outbox events the bus refused for good (kept in the outbox with the reason)",
)


_OUTBOX = cast(sa.Table, OutboxMessage.__table__)
#: Relays running in this process, woken when a transaction that staged events commits.
_RELAYS: weakref.WeakSet[OutboxRelay] = weakref.WeakSet()
_STAGED = "chargenet.outbox.staged"
#: The relays' transaction-scoped lock on PostgreSQL (each service has a database of its own, so
#: one key serves all; the number is arbitrary and only has to differ from other advisory locks).
_ONE_RELAY_AT_A_TIME = sa.text("SELECT pg_advisory_xact_lock(7071002519)")
#: Every relay pass runs these: built once (building a statement and its cache key costs more
#: Python than running a cached one).
_MARK_PUBLISHED = (
    sa.update(_OUTBOX).where(among(_OUTBOX.c.seq, "seqs")).values(published_at=sa.bindparam("now"))
)
_UNPUBLISHED = (
    sa.select(_OUTBOX.c.seq, _OUTBOX.c.topic, _OUTBOX.c.payload)
    .where(_OUTBOX.c.published_at.is_(None))
    .order_by(_OUTBOX.c.seq)
    .limit(sa.bindparam("limit"))
)
#: How often a relay prunes the tables past their retention (``core.db.retention``).
PRUNE_EVERY_SECONDS = 600.0
#: Delete batches per table in one idle moment of a relay.
PRUNE_BATCHES = 5


def add_to_outbox(session: Session, topic: str, envelope: Envelope) -> None:
    """Stage one event in the caller's transaction (its commit wakes this process's relays)."""
    session.add(
        OutboxMessage(
            event_id=envelope.id,
            topic=topic,
            key=envelope.subject,
            payload=envelope.to_bytes(),
        )
    )
    session.info[_STAGED] = True


@event.listens_for(Session, "after_commit")
def _wake_relays(session: Session) -> None:
    """The events are committed: a relay on the same database publishes them now instead of at
    its next poll (the poll stays, for events committed by another process)."""
    if not session.info.pop(_STAGED, False):
        return
    engine = session.get_bind()
    for relay in list(_RELAYS):
        if relay.db.engine is engine:
            relay.notify()


@event.listens_for(Session, "after_rollback")
def _forget_staged(session: Session) -> None:
    session.info.pop(_STAGED, None)


@dataclass
class UnitOfWork:
    """One transaction that collects the events its change produces (cosmicpython's pattern)."""

    session: Session
    source: str
    events: list[Envelope] = field(default_factory=list)

    def emit(self, data: EventData, *, subject: str, event_id: str | None = None) -> Envelope:
        envelope = make_envelope(data, subject=subject, source=self.source, event_id=event_id)
        add_to_outbox(self.session, data.topic, envelope)
        self.events.append(envelope)
        return envelope


@contextmanager
def unit_of_work(db: Database, source: str) -> Iterator[UnitOfWork]:
    """Commit the change and its events together, or neither."""
    with db.session() as session:
        yield UnitOfWork(session=session, source=source)


class OutboxRelay:
    """Publishes committed outbox rows in order, then marks them published.

    Several relays may run against one PostgreSQL database (a service's replicas): one at a time
    takes a batch, publishes it and marks it, under a transaction-scoped advisory lock, so the
    events of one key reach the bus in the order they were committed.
    """

    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        batch_size: int = 500,
        retention: Retention | None = None,
        after_publish: Callable[[Sequence[int]], None] | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.batch_size = batch_size
        #: The outbox's and the inbox's retention, kept from this relay's thread (a process
        #: has one relay and one thread that wakes on a schedule anyway); None: kept forever.
        self.retention = retention
        self._pruned_at = 0.0
        # Test hook: runs after the bus acknowledged a batch (its rows' seq) and before it is
        # marked published.
        self._after_publish = after_publish
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def relay_once(self) -> int:
        """Publish one batch; returns how many events went out.

        Columns and one bulk update, not ORM objects: the relay runs after every commit that
        staged events, in every service, and loading and flushing entities cost several times
        the queries themselves.
        """
        with self.db.session() as session:
            if self.db.is_postgres:
                # One relay at a time per database, until its batch is acknowledged and marked.
                # Replicas skipping each other's locked rows published one key's later event
                # while an earlier one still waited for the broker's acknowledgement.
                session.execute(_ONE_RELAY_AT_A_TIME)
            rows = session.execute(_UNPUBLISHED, {"limit": self.batch_size}).all()
            if not rows:
                return 0
            refused: dict[int, str] = {}
            try:
                for _seq, topic, payload in rows:
                    self.bus.publish(topic, Envelope.from_bytes(payload))
                self.bus.flush()
                published = [row.seq for row in rows]
            except Exception as error:
                if not self.bus.refuses(error):
                    raise  # an outage: the whole batch again later
                # The bus refused one of them for good; only one at a time tells which. Sent
                # again for ever, it held back every event after it (and resent the rest).
                published, refused = self._one_at_a_time([tuple(row) for row in rows])
            if self._after_publish is not None:
                self._after_publish(published)
            now = utcnow()
            if published:
                session.execute(_MARK_PUBLISHED, {"seqs": published, "now": now})
            for seq, reason in refused.items():
                session.execute(
                    sa.update(_OUTBOX)
                    .where(_OUTBOX.c.seq == seq)
                    .values(published_at=now, refused=reason)
                )
            return len(published) + len(refused)

    def _one_at_a_time(
        self, rows: Sequence[tuple[int, str, bytes]]
    ) -> tuple[list[int], dict[int, str]]:
        """Publish rows one by one: the seqs the bus took, and those it refused for good with
        why (logged and counted: an operator's matter, the event stays in the outbox). An outage
        midway stops here; what went out so far is kept."""
        published: list[int] = []
        refused: dict[int, str] = {}
        for seq, topic, payload in rows:
            try:
                self.bus.publish(topic, Envelope.from_bytes(payload))
                self.bus.flush()
            except Exception as error:
                if not self.bus.refuses(error):
                    if published or refused:
                        break
                    raise
                log.error("the bus refused outbox event %s on %s for good: %s", seq, topic, error)
                OUTBOX_REFUSED.inc()
                refused[seq] = f"{type(error).__name__}: {error}"[:2000]
                continue
            published.append(seq)
        return published, refused

    def drain(self) -> int:
        total = 0
        while sent := self.relay_once():
            total += sent
        return total

    def notify(self) -> None:
        """Wake the relay now instead of at its next poll (after a commit that emitted events)."""
        self._wake.set()

    def start(self, interval: float) -> None:
        """Run in a thread: woken by this process's commits, and every ``interval`` seconds."""
        _RELAYS.add(self)

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    if self.relay_once():
                        continue
                    self._prune_if_due()
                except Exception:
                    log.exception("outbox relay failed; retrying")
                self._wake.wait(interval)
                self._wake.clear()

        self._thread = threading.Thread(target=loop, name="outbox-relay", daemon=True)
        self._thread.start()

    def _prune_if_due(self) -> None:
        """Prune when idle (nothing to publish), a few batches at a time: a backlog (the first
        run after an upgrade) goes in slices between publications, never ahead of them."""
        if self.retention is None or time.monotonic() - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        pruned = prune(self.db, self.retention, max_batches=PRUNE_BATCHES)
        # With rows left, the next idle moment goes on; else in PRUNE_EVERY_SECONDS.
        self._pruned_at = 0.0 if pruned.more else time.monotonic()

    def stop(self) -> None:
        _RELAYS.discard(self)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def pending(self) -> int:
        with self.db.session() as session:
            count = session.scalar(
                sa.select(sa.func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.published_at.is_(None))
            )
            return int(count or 0)
