"""The driver's live view of a session: the ``sessions`` topic folded into the session row.

Each event is applied once (the core inbox) in the transaction that changes the row. Events of
one session arrive in order (one key, one partition), but a state never moves backwards, so a
late ``started`` after the driver's ``stop_requested`` leaves the session ``stopping``. The cost
so far is priced by the tariff engine from the meter samples, as the escrow's budget check does.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chargenet.core.db import Database
from chargenet.core.db.inbox import apply_once
from chargenet.core.db.tables import utcnow
from chargenet.core.envelope import Envelope
from chargenet.core.events import (
    EscrowOpened,
    MeterReading,
    SessionCancelled,
    SessionFailed,
    SessionPriced,
    SessionRefunded,
    SessionRequested,
    SessionSettled,
    SessionStarted,
    SessionStopped,
    StopRequested,
)
from chargenet.core.logging import bind
from chargenet.core.pricing import MeterSample, PricingError, Tariff, price_samples
from chargenet.wallet import metrics
from chargenet.wallet.models import ChargingSession, MeterPoint
from chargenet.wallet.signals import SessionSignals

log = logging.getLogger(__name__)
CONSUMER = "wallet.sessions"

#: How far along a session is; an event never moves it back.
RANK = {
    "requested": 0,
    "open": 1,
    "charging": 2,
    "stopping": 3,
    "stopped": 4,
    "priced": 5,
    "cancelled": 6,
    "settled": 7,
    "refunded": 8,
    "failed": 9,
}
_TYPES = {
    cls.event_type: cls.__name__
    for cls in (
        SessionRequested,
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
    """The bus handler of the wallet's consumer group on ``sessions``."""

    def __init__(self, db: Database, signals: SessionSignals | None = None) -> None:
        self.db = db
        self.signals = signals or SessionSignals()

    def __call__(self, envelope: Envelope) -> None:
        if envelope.type not in _TYPES:
            return
        with bind(session_id=envelope.subject, event_id=envelope.id):
            if apply_once(self.db, CONSUMER, envelope, self._apply):
                metrics.PROJECTED_EVENTS.labels(type=_TYPES[envelope.type]).inc()
                self.signals.notify([envelope.subject])

    def _apply(self, session: Session, envelope: Envelope) -> None:
        row = session.get(ChargingSession, envelope.subject, with_for_update=True)
        if row is None:
            # Not a session this wallet requested (another MSP's, or a test's): nothing to show.
            return
        kind = envelope.type
        if kind == EscrowOpened.event_type:
            _advance(row, "open")
        elif kind == SessionStarted.event_type:
            started = envelope.payload(SessionStarted)
            row.meter_start_wh = started.meter_start_wh
            row.started_at = started.started_at
            _add_point(session, row, started.started_at, started.meter_start_wh, None)
            _advance(row, "charging")
        elif kind == MeterReading.event_type:
            reading = envelope.payload(MeterReading)
            _add_point(session, row, reading.measured_at, reading.energy_wh, reading.power_w)
            _advance(row, "charging")
            _reprice(session, row, end=None)
        elif kind == StopRequested.event_type:
            row.stop_requested = True
            if row.state in ("open", "charging"):
                _advance(row, "stopping")
        elif kind == SessionStopped.event_type:
            stopped = envelope.payload(SessionStopped)
            row.stopped_at = stopped.stopped_at
            row.reason = stopped.reason
            _add_point(session, row, stopped.stopped_at, stopped.meter_stop_wh, None)
            _advance(row, "stopped")
            _reprice(session, row, end=stopped.stopped_at)
        elif kind == SessionPriced.event_type:
            row.cost_so_far = envelope.payload(SessionPriced).amount
            _advance(row, "priced")
        elif kind == SessionSettled.event_type:
            settled = envelope.payload(SessionSettled)
            row.amount_settled = settled.amount_settled
            row.cost_so_far = settled.amount_settled
            row.amount_refunded = settled.amount_locked - settled.amount_settled
            _advance(row, "settled")
        elif kind == SessionCancelled.event_type:
            row.reason = envelope.payload(SessionCancelled).reason
            _advance(row, "cancelled")
        elif kind == SessionRefunded.event_type:
            row.amount_refunded = envelope.payload(SessionRefunded).amount
            _advance(row, "refunded")
        elif kind == SessionFailed.event_type:
            row.reason = envelope.payload(SessionFailed).reason
            _advance(row, "failed")
        row.version += 1
        row.updated_at = utcnow()


def _advance(row: ChargingSession, state: str) -> None:
    if RANK[state] >= RANK.get(row.state, 0):
        row.state = state


def _add_point(
    session: Session, row: ChargingSession, at: datetime, energy_wh: int, power_w: int | None
) -> None:
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    existing = session.get(MeterPoint, (row.session_id, at))
    if existing is None:
        session.add(
            MeterPoint(
                session_id=row.session_id, measured_at=at, energy_wh=energy_wh, power_w=power_w
            )
        )
    if row.meter_start_wh is not None:
        row.energy_wh = max(row.energy_wh, energy_wh - row.meter_start_wh)


def _reprice(session: Session, row: ChargingSession, end: datetime | None) -> None:
    session.flush()
    points = session.scalars(
        sa.select(MeterPoint)
        .where(MeterPoint.session_id == row.session_id)
        .order_by(MeterPoint.measured_at)
    ).all()
    if len(points) < 2:
        return
    samples = [
        MeterSample(
            timestamp=p.measured_at if p.measured_at.tzinfo else p.measured_at.replace(tzinfo=UTC),
            energy_wh=Decimal(p.energy_wh),
            power_kw=Decimal(p.power_w) / 1000 if p.power_w is not None else None,
        )
        for p in points
    ]
    try:
        result = price_samples(
            Tariff.model_validate(json.loads(row.tariff)),
            samples,
            end=end,
            time_zone=row.time_zone,
        )
    except (PricingError, ValueError) as error:
        # The meter said something the engine refuses (e.g. a register going backwards): the
        # cost so far stays where it was; the escrow's pricing at settlement is what counts.
        log.warning("cannot price session %s so far: %s", row.session_id, error)
        return
    row.cost_so_far = min(result.total_incl_vat_units, row.max_amount)
