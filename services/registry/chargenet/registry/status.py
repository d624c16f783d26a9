"""Live status: the gateway's charge point events, applied once each (inbox by event id).

Within a charge point the events arrive in order (one partition per key), but a redelivery after
a rebalance can replay an older one: a report older than what is stored does not overwrite it.
What the bus fetched together is applied in one transaction (``batch``); if that fails the bus
hands the events over one by one (``__call__``), each in its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chargenet.core.db import Database
from chargenet.core.db.database import among
from chargenet.core.db.inbox import apply_batch_once, apply_once
from chargenet.core.envelope import Envelope
from chargenet.core.events import (
    ChargePointBooted,
    ChargePointDisconnected,
    ConnectorStatusChanged,
    Topic,
)
from chargenet.registry.metrics import STATUS_EVENTS
from chargenet.registry.models import ChargePoint, ConnectorStatus

log = logging.getLogger(__name__)
CONSUMER = "registry.charge-points"
CONSUMES = (Topic.CHARGE_POINTS.value,)
HANDLED = frozenset(
    {
        ChargePointBooted.event_type,
        ConnectorStatusChanged.event_type,
        ChargePointDisconnected.event_type,
    }
)
#: Statuses of connector 0 (the whole charge point) that make every connector unusable.
UNUSABLE = frozenset({"Unavailable", "Faulted"})


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


ConnectorKey = tuple[str, int, int]  # charge point, EVSE, connector


#: Built once: every batch of status events locks its rows with these, only the ids change.
_LOCK_POINTS = (
    sa.select(ChargePoint)
    .where(among(ChargePoint.charge_point_id, "ids"))
    .order_by(ChargePoint.charge_point_id)
    .with_for_update()
)
_LOCK_CONNECTORS = (
    sa.select(ConnectorStatus)
    .where(among(ConnectorStatus.charge_point_id, "ids"))
    .order_by(
        ConnectorStatus.charge_point_id,
        ConnectorStatus.ocpp_evse_id,
        ConnectorStatus.ocpp_connector_id,
    )
    .with_for_update()
)


@dataclass
class _Rows:
    """The rows a transaction's events name, locked up front: one statement per table, in key
    order (two replicas' batches cannot deadlock), instead of a locking look-up per event."""

    points: dict[str, ChargePoint] = field(default_factory=dict)
    connectors: dict[ConnectorKey, ConnectorStatus] = field(default_factory=dict)

    @classmethod
    def locked(cls, session: Session, envelopes: Sequence[Envelope]) -> _Rows:
        ids = sorted({_charge_point_of(e) for e in envelopes})
        points = session.scalars(_LOCK_POINTS, {"ids": ids})
        connectors = session.scalars(_LOCK_CONNECTORS, {"ids": ids})
        return cls(
            {p.charge_point_id: p for p in points},
            {(c.charge_point_id, c.ocpp_evse_id, c.ocpp_connector_id): c for c in connectors},
        )


def _charge_point_of(envelope: Envelope) -> str:
    return str(envelope.data.get("charge_point_id", ""))


class StatusConsumer:
    def __init__(self, db: Database) -> None:
        self.db = db

    def __call__(self, envelope: Envelope) -> None:
        if envelope.type not in HANDLED:
            STATUS_EVENTS.labels(outcome="ignored").inc()
            return
        if apply_once(self.db, CONSUMER, envelope, lambda s, e: self._apply_all(s, [e])):
            STATUS_EVENTS.labels(outcome="applied").inc()
        else:
            STATUS_EVENTS.labels(outcome="duplicate").inc()

    def batch(self, envelopes: Sequence[Envelope]) -> None:
        """The events in one transaction: a session's status changes come in bursts (a start
        and a stop each move a connector two or three times), one commit serves them all."""
        handled = [e for e in envelopes if e.type in HANDLED]
        if len(handled) < len(envelopes):
            STATUS_EVENTS.labels(outcome="ignored").inc(len(envelopes) - len(handled))
        if not handled:
            return
        fresh = apply_batch_once(self.db, CONSUMER, handled, self._apply_all)
        STATUS_EVENTS.labels(outcome="applied").inc(len(fresh))
        if len(fresh) < len(handled):
            STATUS_EVENTS.labels(outcome="duplicate").inc(len(handled) - len(fresh))

    def _apply_all(self, session: Session, envelopes: list[Envelope]) -> None:
        rows = _Rows.locked(session, envelopes)
        for envelope in envelopes:
            self._apply(session, rows, envelope)

    def _apply(self, session: Session, rows: _Rows, envelope: Envelope) -> None:
        if envelope.type == ChargePointBooted.event_type:
            booted = envelope.payload(ChargePointBooted)
            self._charge_point(session, rows, booted.charge_point_id, booted.cpo_id, envelope.time)
        elif envelope.type == ConnectorStatusChanged.event_type:
            changed = envelope.payload(ConnectorStatusChanged)
            self._status(session, rows, changed)
        else:
            gone = envelope.payload(ChargePointDisconnected)
            point = self._charge_point(
                session, rows, gone.charge_point_id, gone.cpo_id, envelope.time, online=False
            )
            if point is not None:
                point.offline_reason = gone.reason[:200]

    def _charge_point(
        self,
        session: Session,
        rows: _Rows,
        charge_point_id: str,
        cpo_id: str,
        at: datetime,
        *,
        online: bool = True,
    ) -> ChargePoint | None:
        point = rows.points.get(charge_point_id)
        if point is None:
            point = ChargePoint(
                charge_point_id=charge_point_id,
                cpo_id=cpo_id,
                online=online,
                last_report_at=at,
            )
            session.add(point)
            rows.points[charge_point_id] = point
            return point
        if _aware(point.last_report_at) > at:
            STATUS_EVENTS.labels(outcome="stale").inc()
            return None
        point.online, point.last_report_at, point.cpo_id = online, at, cpo_id
        if online:
            point.offline_reason = None
        return point

    def _status(self, session: Session, rows: _Rows, changed: ConnectorStatusChanged) -> None:
        at = changed.reported_at
        point = self._charge_point(session, rows, changed.charge_point_id, changed.cpo_id, at)
        if changed.connector_id == 0:
            if point is not None:
                point.status = changed.status
            return
        key = (changed.charge_point_id, changed.evse_id or 0, changed.connector_id)
        row = rows.connectors.get(key)
        if row is None:
            row = ConnectorStatus(
                charge_point_id=key[0],
                ocpp_evse_id=key[1],
                ocpp_connector_id=key[2],
                status=changed.status,
                error_code=changed.error_code,
                reported_at=at,
            )
            session.add(row)
            rows.connectors[key] = row
        elif _aware(row.reported_at) <= at:
            row.status, row.error_code, row.reported_at = changed.status, changed.error_code, at
