"""The driver's live view of a session: the ``sessions`` topic folded into the session row.

Each event is applied once (the core inbox) in the transaction that changes the row. Events of
one session arrive in order (one key, one partition), but a state never moves backwards, so a
late ``started`` after the driver's ``stop_requested`` leaves the session ``stopping``. The cost
so far is priced by the tariff engine from the meter samples, as the escrow's budget check does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chargenet.core.db import Database
from chargenet.core.db.database import among, insert_new
from chargenet.core.db.inbox import apply_batch_once, apply_once
from chargenet.core.db.tables import utcnow
from chargenet.core.envelope import Envelope
from chargenet.core.events import (
    EscrowOpened,
    MeterReading,
    SessionCancelled,
    SessionFailed,
    SessionPriced,
    SessionRefunded,
    SessionSettled,
    SessionStarted,
    SessionStopped,
    StopRequested,
)
from chargenet.core.logging import bind
from chargenet.core.pricing import (
    MeterSample,
    PricingError,
    RunningPrice,
    RunningPrices,
    meter_sample,
    tariff_of,
)
from chargenet.wallet import metrics
from chargenet.wallet.models import (
    LOCK_SESSIONS,
    RANK,
    ChargingSession,
    MeterPoint,
    advance,
    request_stop,
)
from chargenet.wallet.sessions import SOURCE
from chargenet.wallet.signals import SessionSignals

log = logging.getLogger(__name__)
CONSUMER = "wallet.sessions"
#: A session's running price made in a transaction: kept once it commits, covering that many
#: stored points.
_Priced = tuple[str, RunningPrice, int]

#: What the live view applies; not ``requested``: the wallet wrote that row itself.
_TYPES = {
    cls.event_type: cls.__name__
    for cls in (
        EscrowOpened,
        SessionStarted,
        MeterReading,
        StopRequested,
        SessionStopped,
        SessionPriced,
        SessionSettled,
        SessionCancelled,
        SessionRefunded,
        SessionFailed,
    )
}


class SessionProjection:
    """The bus handler of the wallet's consumer group on ``sessions``.

    Events are folded into their session's row in memory and written once: the meter samples in
    one insert, the cost priced once (after the last sample, before an event that sets the
    price), the row updated only if what the driver sees changed. The per-event handler folds
    one event; ``batch`` folds what the consumer fetched together, in one transaction.
    """

    #: The event types to subscribe to (the bus passes over the others unparsed).
    TYPES = frozenset(_TYPES)

    def __init__(self, db: Database, signals: SessionSignals | None = None) -> None:
        self.db = db
        self.signals = signals or SessionSignals()
        #: Running sessions' prices, so a meter value books one sample, not all of them again.
        self.prices = RunningPrices()

    def __call__(self, envelope: Envelope) -> None:
        if not _applies(envelope):
            return
        priced: list[_Priced] = []

        def apply(session: Session, event: Envelope) -> None:
            self.fold(session, [event], priced)

        with bind(session_id=envelope.subject, event_id=envelope.id):
            if apply_once(self.db, CONSUMER, envelope, apply):
                self._keep(priced)
                metrics.PROJECTED_EVENTS.labels(type=_TYPES[envelope.type]).inc()
                self.signals.notify([envelope.subject])

    def batch(self, envelopes: Sequence[Envelope]) -> None:
        """The bus's batch handler: what the consumer fetched together, in one transaction (if
        it raises, the bus hands the events to ``__call__`` one by one)."""
        wanted = [e for e in envelopes if _applies(e)]
        if not wanted:
            return
        folded: list[ChargingSession] = []
        priced: list[_Priced] = []
        fresh = apply_batch_once(
            self.db,
            CONSUMER,
            wanted,
            lambda session, events: folded.extend(self.fold(session, events, priced)),
        )
        self._keep(priced)
        for envelope in fresh:
            metrics.PROJECTED_EVENTS.labels(type=_TYPES[envelope.type]).inc()
        self.signals.committed(folded)

    def _keep(self, priced: list[_Priced]) -> None:
        """The running prices of a committed transaction (a rolled back one keeps none)."""
        for session_id, running, covering in priced:
            self.prices.put(session_id, running, covering=covering)

    def fold(
        self,
        session: Session,
        envelopes: Sequence[Envelope],
        priced: list[_Priced] | None = None,
    ) -> list[ChargingSession]:
        """Apply events (of any sessions, in order) to their rows, in the caller's transaction;
        returns the rows. The running prices it made are added to ``priced``, to be kept once
        the transaction commits."""
        by_session: dict[str, list[Envelope]] = {}
        for envelope in envelopes:
            by_session.setdefault(envelope.subject, []).append(envelope)
        rows = session.scalars(LOCK_SESSIONS, {"ids": sorted(by_session)}).all()
        # A session missing here is not one this wallet requested (another MSP's, a test's).
        kept = priced if priced is not None else []
        # Meter points are written and read by statements, not the unit of work: the rows'
        # changes go out in the commit's one flush, not in one before every point statement.
        with session.no_autoflush:
            folds = [_Fold(row) for row in rows]
            for fold in folds:
                fold.apply(by_session[fold.row.session_id])
            points = [point for fold in folds for point in fold.take_points()]
            if points:
                dialect = session.get_bind().dialect.name
                session.execute(_INSERT_NEW[dialect], points)
            _reprice(session, [fold for fold in folds if fold.wants_price()], self.prices, kept)
            for fold in folds:
                fold.finish()
        return list(rows)


class _Fold:
    """One session's events applied to its row, in order; the batch then stores the samples of
    all its sessions in one insert and prices the ones that ask for it (``_reprice``)."""

    def __init__(self, row: ChargingSession) -> None:
        self.row = row
        self.points: dict[datetime, dict[str, Any]] = {}  # new samples, the first per moment
        self.unpriced: list[MeterSample] = []  # stored since the last pricing, in event order
        self.reprice = False  # a sample came since the last pricing
        self.end: datetime | None = None  # the stop's time, when the session stopped
        self.seen = _visible(row)  # what the driver saw before

    def apply(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            self._event(envelope)

    def take_points(self) -> list[dict[str, Any]]:
        """The new samples, to be stored (a sample already stored stays)."""
        points, self.points = list(self.points.values()), {}
        return points

    def wants_price(self) -> bool:
        """A sample asked for a price and the escrow has not priced the session: its price
        stands (a meter value that comes after it, from a late publisher, must not replace it)."""
        return self.reprice and RANK[self.row.state] < RANK["priced"]

    def finish(self) -> None:
        row = self.row
        if _visible(row) != self.seen:
            # Only then: the version tells the driver's stream there is something new to show.
            row.version += 1
            row.updated_at = utcnow()

    def _event(self, envelope: Envelope) -> None:
        row, kind = self.row, envelope.type
        if kind == EscrowOpened.event_type:
            advance(row, "open")
        elif kind == SessionStarted.event_type:
            started = envelope.payload(SessionStarted)
            row.meter_start_wh = started.meter_start_wh
            row.started_at = started.started_at
            self._point(started.started_at, started.meter_start_wh, None)
            advance(row, "charging")
        elif kind == MeterReading.event_type:
            reading = envelope.payload(MeterReading)
            self._point(reading.measured_at, reading.energy_wh, reading.power_w)
            advance(row, "charging")
            self.reprice, self.end = True, None
        elif kind == StopRequested.event_type:
            request_stop(row)
        elif kind == SessionStopped.event_type:
            stopped = envelope.payload(SessionStopped)
            row.stopped_at = stopped.stopped_at
            row.reason = stopped.reason
            self._point(stopped.stopped_at, stopped.meter_stop_wh, None)
            advance(row, "stopped")
            self.reprice, self.end = True, stopped.stopped_at
        elif kind == SessionPriced.event_type:
            row.cost_so_far = envelope.payload(SessionPriced).amount
            advance(row, "priced")
        elif kind == SessionSettled.event_type:
            settled = envelope.payload(SessionSettled)
            row.amount_settled = settled.amount_settled
            row.cost_so_far = settled.amount_settled
            row.amount_refunded = settled.amount_locked - settled.amount_settled
            advance(row, "settled")
        elif kind == SessionCancelled.event_type:
            row.reason = envelope.payload(SessionCancelled).reason
            advance(row, "cancelled")
        elif kind == SessionRefunded.event_type:
            row.amount_refunded = envelope.payload(SessionRefunded).amount
            advance(row, "refunded")
        elif kind == SessionFailed.event_type:
            row.reason = envelope.payload(SessionFailed).reason
            advance(row, "failed")

    def _point(self, at: datetime, energy_wh: int, power_w: int | None) -> None:
        row = self.row
        at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        if at not in self.points:
            self.points[at] = {
                "session_id": row.session_id,
                "measured_at": at,
                "energy_wh": energy_wh,
                "power_w": power_w,
            }
            self.unpriced.append(meter_sample(at, energy_wh, power_w))
        if row.meter_start_wh is not None:
            row.energy_wh = max(row.energy_wh, energy_wh - row.meter_start_wh)


def _reprice(
    session: Session, folds: Sequence[_Fold], prices: RunningPrices, priced: list[_Priced]
) -> None:
    """Price these sessions: this process's running price with the new samples booked, or one
    built from all the stored points where it has not seen all the others (its first value here,
    another replica's, a redelivered one already stored, a restart). The points are counted, and
    read where needed, in one statement each for the whole batch."""
    cached = [fold.row.session_id for fold in folds if fold.row.session_id in prices]
    # Counted only where there is a running price to check.
    counts: dict[str, int] = {}
    if cached:
        counts = {sid: n for sid, n in session.execute(_COUNT_POINTS, {"ids": cached})}
    extended: dict[str, tuple[RunningPrice, int]] = {}  # session -> price, points it covers
    refused: set[str] = set()
    for fold in folds:
        session_id = fold.row.session_id
        if session_id not in prices:
            continue
        stored = counts.get(session_id, 0)
        found = prices.get(session_id, covering=stored - len(fold.unpriced))
        try:
            running = None if found is None else found.extended(fold.unpriced)
        except (PricingError, ValueError) as error:
            _cannot_price(session_id, error)
            refused.add(session_id)
            continue
        if running is not None:
            extended[session_id] = (running, stored)
    rebuilt = [f.row.session_id for f in folds if f.row.session_id not in extended.keys() | refused]
    samples = _stored_samples(session, rebuilt) if rebuilt else {}
    for fold in folds:
        row = fold.row
        if row.session_id in refused:
            continue
        try:
            if row.session_id in extended:
                running, covering = extended[row.session_id]
            else:
                running = RunningPrice(tariff_of(row.tariff), time_zone=row.time_zone)
                for sample in samples.get(row.session_id, ()):
                    running.add(sample)
                covering = running.count
            priced.append((row.session_id, running, covering))
            if running.count < 2:
                continue
            result = running.result(end=fold.end)
        except (PricingError, ValueError) as error:
            _cannot_price(row.session_id, error)
            continue
        row.cost_so_far = min(result.total_incl_vat_units, row.max_amount)


def _cannot_price(session_id: str, error: Exception) -> None:
    # The meter said something the engine refuses (e.g. a register going backwards): the cost
    # so far stays where it was; the escrow's pricing at settlement counts.
    log.warning("cannot price session %s so far: %s", session_id, error)


# Every meter value runs these: built once, not per call (SQLAlchemy caches the compiled form
# either way; building the statement is the Python cost saved).
_POINTS = cast(sa.Table, MeterPoint.__table__)
#: Inserts of meter points that leave a point already stored (a redelivered sample), by dialect.
#: Executed with a list of rows (a ``.values(rows)`` insert compiles anew for every new number of
#: rows). On the table, not the entity: the ORM's bulk insert path costs more than the insert.
_INSERT_NEW = insert_new(_POINTS)
_COUNT_POINTS = (
    sa.select(_POINTS.c.session_id, sa.func.count())
    .where(among(_POINTS.c.session_id, "ids"))
    .group_by(_POINTS.c.session_id)
)
_SAMPLES = (
    sa.select(
        MeterPoint.session_id, MeterPoint.measured_at, MeterPoint.energy_wh, MeterPoint.power_w
    )
    .where(among(MeterPoint.session_id, "ids"))
    .order_by(MeterPoint.session_id, MeterPoint.measured_at)
)


def _applies(envelope: Envelope) -> bool:
    """An event the live view applies: not the wallet's own stop (``Sessions.stop`` applied it
    to the row as it published it)."""
    if envelope.type == StopRequested.event_type:
        return envelope.source != SOURCE
    return envelope.type in _TYPES


def _visible(row: ChargingSession) -> tuple[Any, ...]:
    """What the driver's view shows of the row (``sessions.view`` but the version)."""
    return (
        row.state,
        row.stop_requested,
        row.energy_wh,
        row.cost_so_far,
        row.amount_settled,
        row.amount_refunded,
        row.reason,
        row.started_at,
        row.stopped_at,
    )


def _stored_samples(session: Session, session_ids: list[str]) -> dict[str, list[MeterSample]]:
    """The stored samples of these sessions, each's in time order."""
    samples: dict[str, list[MeterSample]] = {}
    for session_id, at, energy_wh, power_w in session.execute(_SAMPLES, {"ids": session_ids}):
        samples.setdefault(session_id, []).append(meter_sample(at, energy_wh, power_w))
    return samples
