"""Live status: the gateway's charge point events, applied once each (inbox by event id).

Within a charge point the events arrive in order (one partition per key), but a redelivery after
a rebalance can replay an older one: a report older than what is stored does not overwrite it.
What the bus fetched together is applied in one transaction (``batch``); if that fails the bus
hands the events over one by one (``__call__``), each in its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from chargenet.core.db import Database
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


class StatusConsumer:
    def __init__(self, db: Database) -> None:
        self.db = db

    def __call__(self, envelope: Envelope) -> None:
        if envelope.type not in HANDLED:
            STATUS_EVENTS.labels(outcome="ignored").inc()
            return
        if apply_once(self.db, CONSUMER, envelope, self._apply):
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
        for envelope in envelopes:
            self._apply(session, envelope)

    def _apply(self, session: Session, envelope: Envelope) -> None:
        if envelope.type == ChargePointBooted.event_type:
            booted = envelope.payload(ChargePointBooted)
            self._charge_point(session, booted.charge_point_id, booted.cpo_id, envelope.time)
        elif envelope.type == ConnectorStatusChanged.event_type:
            changed = envelope.payload(ConnectorStatusChanged)
            self._status(session, changed)
        else:
            gone = envelope.payload(ChargePointDisconnected)
            point = self._charge_point(
                session, gone.charge_point_id, gone.cpo_id, envelope.time, online=False
            )
            if point is not None:
                point.offline_reason = gone.reason[:200]

    def _charge_point(
        self,
        session: Session,
        charge_point_id: str,
        cpo_id: str,
        at: datetime,
        *,
        online: bool = True,
    ) -> ChargePoint | None:
        point = session.get(ChargePoint, charge_point_id, with_for_update=True)
        if point is None:
            point = ChargePoint(
                charge_point_id=charge_point_id,
                cpo_id=cpo_id,
                online=online,
                last_report_at=at,
            )
            session.add(point)
            return point
        if _aware(point.last_report_at) > at:
            STATUS_EVENTS.labels(outcome="stale").inc()
            return None
        point.online, point.last_report_at, point.cpo_id = online, at, cpo_id
        if online:
            point.offline_reason = None
        return point

    def _status(self, session: Session, changed: ConnectorStatusChanged) -> None:
        at = changed.reported_at
        point = self._charge_point(session, changed.charge_point_id, changed.cpo_id, at)
        if changed.connector_id == 0:
            if point is not None:
                point.status = changed.status
            return
        key = (changed.charge_point_id, changed.evse_id or 0, changed.connector_id)
        row = session.get(ConnectorStatus, key, with_for_update=True)
        if row is None:
            session.add(
                ConnectorStatus(
                    charge_point_id=key[0],
                    ocpp_evse_id=key[1],
                    ocpp_connector_id=key[2],
                    status=changed.status,
                    error_code=changed.error_code,
                    reported_at=at,
                )
            )
        elif _aware(row.reported_at) <= at:
            row.status, row.error_code, row.reported_at = changed.status, changed.error_code, at
