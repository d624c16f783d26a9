"""The sessions consumer: each session's buyer from its request, one invoice per settlement,
whatever the bus redelivers."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import groupby

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from chargenet.core.db import Database
from chargenet.core.db.inbox import apply_batch_once, apply_once
from chargenet.core.envelope import Envelope
from chargenet.core.logging import bind
from chargenet.core.metrics import counter
from chargenet.invoicing.document import InvoiceError, Party
from chargenet.invoicing.events import SessionRequested, SessionSettled
from chargenet.invoicing.issuing import issue_all, record_buyer, refuse
from chargenet.invoicing.models import RefusedSettlement

log = logging.getLogger(__name__)
CONSUMER = "invoicing.settled"
BUYERS = "invoicing.requested"

#: The sessions topic carries every session event; only requests and settlements matter here,
#: and the bus passes over the rest (meter values, mostly) without parsing them.
APPLIED_TYPES = frozenset({SessionRequested.event_type, SessionSettled.event_type})

INVOICES = counter(
    "chargenet_invoicing_invoices", "Settled-session events handled, by outcome", ("outcome",)
)


class SessionsConsumer:
    def __init__(
        self,
        db: Database,
        suppliers: Mapping[str, Party],
        meter_data_url: str,
        default_country: str = "DE",
    ) -> None:
        self.db = db
        self.suppliers = suppliers
        self.meter_data_url = meter_data_url
        self.default_country = default_country

    def __call__(self, envelope: Envelope) -> None:
        if envelope.type == SessionRequested.event_type:
            with bind(session_id=envelope.subject, event_id=envelope.id):
                apply_once(self.db, BUYERS, envelope, self._record)
        elif envelope.type == SessionSettled.event_type:
            with bind(session_id=envelope.subject, event_id=envelope.id):
                if not apply_once(self.db, CONSUMER, envelope, self._apply):
                    INVOICES.labels(outcome="duplicate").inc()

    def batch(self, envelopes: Sequence[Envelope]) -> None:
        """The bus's batch handler: each run of requests or settlements fetched together in one
        transaction (settlements that come together, a burst of stops, paid a commit, an inbox
        claim and a counter lock each). If it raises, the bus hands them over one by one."""
        for kind, run in groupby(envelopes, key=lambda e: e.type):
            events = list(run)
            if kind == SessionRequested.event_type:
                apply_batch_once(self.db, BUYERS, events, self._record_all)
            elif kind == SessionSettled.event_type:
                fresh = apply_batch_once(self.db, CONSUMER, events, self._apply_all)
                if repeated := len(events) - len(fresh):
                    INVOICES.labels(outcome="duplicate").inc(repeated)

    def _record_all(self, session: Session, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            with bind(session_id=envelope.subject, event_id=envelope.id):
                self._record(session, envelope)

    def _apply_all(self, session: Session, envelopes: list[Envelope]) -> None:
        # By CPO (stable: each CPO's in the order they came): each CPO's number series is
        # locked until the commit, and two replicas taking two CPOs' in opposite orders would
        # deadlock.
        settled = sorted((e.payload(SessionSettled) for e in envelopes), key=lambda s: s.cpo_id)
        self._issue_all(session, settled)

    def _record(self, session: Session, envelope: Envelope) -> None:
        record_buyer(session, envelope.payload(SessionRequested), self.default_country)

    def reissue(self) -> int:
        """Issue the invoices refused for CPOs that have a supplier now (the usual cause: the
        service ran without one); each in its own transaction. Returns how many were issued;
        one refused again keeps its row, with the new reason."""
        with self.db.session() as session:
            waiting = session.scalars(
                sa.select(RefusedSettlement.session_id).where(
                    RefusedSettlement.cpo_id.in_(sorted(self.suppliers)),
                    RefusedSettlement.settled.is_not(None),
                )
            ).all()
        issued = 0
        for session_id in waiting:
            with bind(session_id=session_id), self.db.session() as session:
                row = session.get(RefusedSettlement, session_id, with_for_update=True)
                if row is None or row.settled is None:
                    continue  # another replica issued it meanwhile
                try:
                    settled = SessionSettled.model_validate_json(row.settled)
                except ValidationError as error:
                    # Kept by a version whose event this one cannot read: left to an operator.
                    log.error("refused settlement %s cannot be read: %s", session_id, error)
                    continue
                if self._issue_all(session, [settled]) == 1:
                    session.delete(row)
                    issued += 1
        if waiting:
            log.info("issued %d of %d refused settlements", issued, len(waiting))
        return issued

    def _apply(self, session: Session, envelope: Envelope) -> None:
        self._issue_all(session, [envelope.payload(SessionSettled)])

    def _issue_all(self, session: Session, settlements: list[SessionSettled]) -> int:
        """Issue the invoices, record the refusals; returns how many sessions have their invoice
        (issued now, or before)."""
        outcomes = issue_all(
            session,
            settlements,
            suppliers=self.suppliers,
            meter_data_url=self.meter_data_url,
            default_country=self.default_country,
        )
        invoiced = 0
        for settled, outcome in zip(settlements, outcomes, strict=True):
            with bind(session_id=settled.session_id):
                if isinstance(outcome, InvoiceError):
                    refuse(session, settled, outcome)
                    INVOICES.labels(outcome="refused").inc()
                    continue
                if outcome is None:
                    INVOICES.labels(outcome="duplicate").inc()
                else:
                    log.info("issued invoice %s", outcome.number)
                    INVOICES.labels(outcome="issued").inc()
                invoiced += 1
        return invoiced
