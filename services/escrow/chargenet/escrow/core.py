"""What handlers and the worker share: one transaction per transition, with its events.

``EscrowCore.tx()`` is one database transaction; every event it stages goes to the outbox in the
same transaction, and metrics are counted only once it committed. SQLite serialises writers on
one lock, and a read-then-write transaction that lost the race fails instead of waiting, so in
SQLite the service's own transactions take a process lock first (the embedded default is one
process); PostgreSQL rows are locked with ``FOR UPDATE`` instead.

A consumer's batch of events is one transaction too (``apply_batch``): a commit per event cost
5-8 database round trips each. Whoever locks several session rows locks them in session id
order, in one statement (``lock_all``), so the consumer, the operations' outcomes and a second
replica never wait on each other in a circle; the worker's queries skip locked rows.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chargenet.core.db import Database
from chargenet.core.db.database import among
from chargenet.core.db.inbox import apply_batch_once, apply_once
from chargenet.core.db.outbox import add_to_outbox
from chargenet.core.envelope import Envelope, EventData, make_envelope
from chargenet.core.events import GatewayCommand, gateway_commands_topic
from chargenet.core.pricing import MeterSample, meter_sample
from chargenet.escrow.chain import Station
from chargenet.escrow.metrics import FINISHED, TRANSITIONS
from chargenet.escrow.models import MeterSampleRow, SessionRow
from chargenet.escrow.settings import EscrowSettings
from chargenet.escrow.states import SWEPT_FOR_REFUND, State, check

log = logging.getLogger(__name__)

SOURCE = "chargenet/escrow"
START_ACTION = "RemoteStartTransaction"
STOP_ACTION = "RemoteStopTransaction"


Q = TypeVar("Q", bound=sa.Select[Any])


class Work(StrEnum):
    """What a commit left the worker to do: each wake-up runs only those parts of its tick."""

    OPENS = "opens"  # sessions to open (a request, or an open finished that others waited for)
    SETTLES = "settles"  # sessions to settle (a stop, or a settlement finished)
    SENDS = "sends"  # chain operations staged, to hand to the signer


ALL_WORK = frozenset(Work)
#: States the worker acts on: a session entering one wakes it.
_STATE_WORK = {State.REQUESTED: Work.OPENS, State.STOPPED: Work.SETTLES}
#: Core, not ORM: executed with a list of rows, compiled once, sent as one multi-row insert.
_INSERT_SAMPLE = sa.insert(cast(sa.Table, MeterSampleRow.__table__))
# Every event of every session is applied with its row locked: the statement built once
# (SQLite, one writer at a time, compiles FOR UPDATE away).
_LOCK_SESSIONS = (
    sa.select(SessionRow)
    .where(among(SessionRow.session_id, "ids"))
    .order_by(SessionRow.session_id)
    .with_for_update()
)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Stopped:
    """A stop applied to a session's row, its close still to come."""

    row: SessionRow
    end: datetime | None
    reason: str


@dataclass
class Tx:
    """One transaction: the ORM session, its staged events, and what to count after commit."""

    session: Session
    _after: list[Callable[[], None]] = field(default_factory=list)
    events: int = 0
    #: The worker has something to do once this commits (a session to open or settle, an
    #: operation to send, one finished that others waited for).
    work: set[Work] = field(default_factory=set)
    #: Session rows this transaction holds locked (``EscrowCore.locked``/``lock_all``) or
    #: inserted.
    rows: dict[str, SessionRow] = field(default_factory=dict)
    #: Session ids ``lock_all`` looked for: those not in ``rows`` did not exist, and are not
    #: looked for again (a session's row is inserted only by the consumer of its partition).
    looked_up: set[str] = field(default_factory=set)
    #: Stations read from the chain before the transaction began, by id (None: unknown), so
    #: that no node round trip is made while the batch's sessions are locked.
    stations: dict[bytes, Station | None] = field(default_factory=dict)
    #: Sessions requested in this transaction: opened from it when no open is on its way.
    requested: list[SessionRow] = field(default_factory=list)
    #: Meter samples this transaction recorded and has not priced yet, by session.
    samples: dict[str, list[MeterSample]] = field(default_factory=dict)
    #: Sessions whose stop this transaction applied and has not closed yet (priced from their
    #: samples), by id: the consumer closes them together (``SessionHandlers._close``).
    stopped: dict[str, Stopped] = field(default_factory=dict)
    #: Recorded samples' rows not yet written (``write_samples``).
    _unwritten: list[dict[str, Any]] = field(default_factory=list)

    def emit(self, data: EventData, subject: str) -> Envelope:
        return self.publish(data.topic, data, subject)

    def publish(self, topic: str, data: EventData, subject: str) -> Envelope:
        envelope = make_envelope(data, subject=subject, source=SOURCE)
        add_to_outbox(self.session, topic, envelope)
        self.events += 1
        return envelope

    def record_sample(
        self,
        session_id: str,
        kind: str,
        measured_at: datetime,
        energy_wh: int,
        power_w: int | None = None,
        signed_data: str | None = None,
    ) -> None:
        """A register reading of a session, written by ``write_samples`` (at the latest when
        the transaction ends)."""
        self._unwritten.append(
            {
                "session_id": session_id,
                "kind": kind,
                "measured_at": measured_at,
                "energy_wh": energy_wh,
                "power_w": power_w,
                "signed_data": signed_data,
            }
        )
        self.samples.setdefault(session_id, []).append(
            meter_sample(measured_at, energy_wh, power_w)
        )

    def write_samples(self) -> None:
        """The recorded samples in one multi-row insert. Every meter value of every charging
        session is one; as ORM objects, the unit of work's flush of them was the largest part
        of the escrow's CPU per meter value."""
        if not self._unwritten:
            return
        if any(isinstance(added, SessionRow) for added in self.session.new):
            # A session row added in this transaction comes first (the samples' foreign key);
            # anything else waits for the commit's one flush instead of one per stop.
            self.session.flush()
        with self.session.no_autoflush:
            self.session.execute(_INSERT_SAMPLE, self._unwritten)
        self._unwritten = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after.append(callback)

    def move(self, row: SessionRow, target: State, reason: str | None = None) -> None:
        """The one way a session changes state; refuses transitions the machine lacks."""
        current = State(row.state)
        check(row.session_id, current, target)
        row.state = target.value
        row.updated_at = utcnow()
        # Refundable on chain from its expiry on: the sweeper's first read is then. A session
        # leaving these states is not read again (clearing an unset value writes nothing).
        row.refund_check_at = row.expiry if target in SWEPT_FOR_REFUND else None
        if (work := _STATE_WORK.get(target)) is not None:
            self.work.add(work)
        if reason is not None:
            row.reason = reason[:2000]
        log.info(
            "session %s: %s -> %s%s",
            row.session_id,
            current,
            target,
            f" ({reason})" if reason else "",
        )

        def count() -> None:
            TRANSITIONS.labels(current.value, target.value).inc()
            if target.is_final:
                FINISHED.labels(target.value.lower()).inc()

        self.after_commit(count)

    def command(self, row: SessionRow, action: str, payload: dict[str, Any], seconds: float) -> str:
        """Stage a command for the session's charge point; returns its id."""
        command_id = uuid.uuid4().hex
        self.publish(
            gateway_commands_topic(row.cpo_id),
            GatewayCommand(
                command_id=command_id,
                charge_point_id=row.charge_point_id,
                action=action,
                payload=payload,
                deadline=utcnow() + timedelta(seconds=seconds),
                session_id=row.session_id,
            ),
            row.charge_point_id,
        )
        return command_id


class EscrowCore:
    """``on_commit`` runs after a transaction that emitted events (wakes the outbox relay),
    ``on_work`` after one that left work for the worker (wakes it instead of its next poll)."""

    def __init__(
        self,
        settings: EscrowSettings,
        db: Database,
        *,
        on_commit: Callable[[], None] | None = None,
        on_work: Callable[[Collection[Work]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self._on_commit = on_commit
        self.on_work = on_work
        self._sqlite_lock = threading.RLock() if not db.is_postgres else None

    @contextlib.contextmanager
    def _serialised(self) -> Iterator[None]:
        if self._sqlite_lock is None:
            yield
            return
        with self._sqlite_lock:
            yield

    @contextlib.contextmanager
    def tx(self) -> Iterator[Tx]:
        with self._serialised():
            with self.db.session() as session:
                tx = Tx(session)
                yield tx
                tx.write_samples()
            self._committed(tx)

    def apply_once(self, consumer: str, envelope: Envelope, apply: Callable[[Tx], None]) -> bool:
        """The core inbox around ``apply``: a redelivered event changes nothing."""
        holder: list[Tx] = []

        def run(session: Session, _envelope: Envelope) -> None:
            tx = Tx(session)
            holder.append(tx)
            apply(tx)
            tx.write_samples()

        with self._serialised():
            applied = apply_once(self.db, consumer, envelope, run)
        if applied and holder:
            self._committed(holder[0])
        return applied

    def apply_batch(
        self,
        consumer: str,
        envelopes: Sequence[Envelope],
        apply: Callable[[Tx, list[Envelope]], None],
    ) -> list[Envelope]:
        """The events not seen before, applied in ONE transaction with their inbox rows; the
        after-commit work (metrics, outbox and worker wake-ups) runs once, after it."""
        holder: list[Tx] = []

        def run(session: Session, fresh: list[Envelope]) -> None:
            tx = Tx(session)
            holder.append(tx)
            apply(tx, fresh)
            tx.write_samples()

        with self._serialised():
            applied = apply_batch_once(self.db, consumer, envelopes, run)
        if holder:
            self._committed(holder[0])
        return applied

    def _committed(self, tx: Tx) -> None:
        for callback in tx._after:
            callback()
        if tx.events and self._on_commit is not None:
            self._on_commit()
        if tx.work and self.on_work is not None:
            self.on_work(tx.work)

    def locked(self, tx: Tx, session_id: str) -> SessionRow | None:
        """The session's row, locked against the other replicas until the transaction ends."""
        row = tx.rows.get(session_id)
        if row is None:
            self.lock_all(tx, [session_id])
            row = tx.rows.get(session_id)
        return row

    def lock_all(self, tx: Tx, session_ids: Collection[str]) -> None:
        """Lock these sessions' rows (those that exist) in one statement, in session id order:
        every transaction that holds several takes them in that order, so none waits in a
        circle (PostgreSQL locks rows in the order the sorted scan returns them). An id looked
        for once in the transaction is not looked for again, found or not: every handler asks
        ``locked`` for its session after the batch's ``lock_all``."""
        wanted = sorted(set(session_ids) - tx.rows.keys() - tx.looked_up)
        if not wanted:
            return
        tx.looked_up.update(wanted)
        for row in tx.session.scalars(_LOCK_SESSIONS, {"ids": wanted}):
            tx.rows[row.session_id] = row

    def select_for_work(self, query: Q) -> Q:
        """Rows one replica's worker takes; another replica skips them rather than wait."""
        if self.db.is_postgres:
            return query.with_for_update(skip_locked=True)
        return query

    def start(self, tx: Tx, row: SessionRow) -> None:
        """OPEN -> STARTING: ask the charge point to start, with a deadline."""
        seconds = self.settings.escrow_start_timeout_seconds
        tx.move(row, State.STARTING)
        row.start_deadline = utcnow() + timedelta(seconds=seconds)
        row.start_command_id = tx.command(
            row, START_ACTION, {"idTag": row.id_token, "connectorId": row.connector_id}, seconds
        )

    def stop_command(self, tx: Tx, row: SessionRow) -> None:
        """Ask the charge point to stop the session's transaction (when it has one)."""
        if row.transaction_id is None:
            return
        row.stop_command_id = tx.command(
            row,
            STOP_ACTION,
            {"transactionId": row.transaction_id},
            self.settings.escrow_start_timeout_seconds,
        )
