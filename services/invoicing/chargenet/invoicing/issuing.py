"""Issuing an invoice for a settled session: the gapless number and the insert, in one transaction.

Gapless per CPO: the CPO's counter row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
serialises writers on its database lock, which this transaction already holds because the inbox
row was written first), incremented, and the invoice inserted in the same transaction. A failure
anywhere rolls the increment back with it, so a number is used if and only if its invoice exists.

Idempotent per session: the consumer runs this through the inbox (one effect per event id), and a
second settled event for the same session under another id finds the invoice and does nothing.

The customer is the buyer the wallet sent with the session's ``SessionRequested`` (recorded by
:func:`record_buyer`); the supplier must be configured (:mod:`chargenet.invoicing.suppliers`),
since an invoice naming only a CPO id would break EN 16931's seller rules: such a settlement is
refused with that reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chargenet.core.db.database import among
from chargenet.core.db.outbox import add_to_outbox
from chargenet.core.envelope import make_envelope
from chargenet.invoicing.document import InvoiceDocument, InvoiceError, Party, build_document
from chargenet.invoicing.events import InvoiceIssued, SessionRequested, SessionSettled
from chargenet.invoicing.models import Buyer, Invoice, InvoiceCounter, RefusedSettlement

log = logging.getLogger(__name__)
SOURCE = "chargenet/invoicing"
# Every batch of settlements runs these: built once, not per batch.
_COUNTER_LOCKED = (
    sa.select(InvoiceCounter)
    .where(InvoiceCounter.cpo_id == sa.bindparam("cpo_id"))
    .with_for_update()
)
_INVOICED = sa.select(Invoice.session_id).where(among(Invoice.session_id, "ids"))
_BUYERS = sa.select(Buyer).where(among(Buyer.session_id, "ids"))
#: What a document carries until its checks passed and it takes its number.
_UNNUMBERED = "(not numbered yet)"

#: What issuing made of one settlement: its invoice, None if the session already had one, or
#: the reason it was refused (nothing was written for it; the caller records the refusal).
Outcome = Invoice | InvoiceError | None


def invoice_number(cpo_id: str, sequence: int) -> str:
    return f"INV-{cpo_id}-{sequence:08d}"


class Numbering:
    """The CPOs' number series of one transaction: each CPO's counter row is locked once, on its
    first invoice, and counted on in memory; the commit writes its last number."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._counters: dict[str, InvoiceCounter] = {}

    def take(self, cpo_id: str) -> int:
        counter = self._counters.get(cpo_id)
        if counter is None:
            counter = self._counters[cpo_id] = _lock_counter(self.session, cpo_id)
        counter.last_number += 1
        return counter.last_number


def _lock_counter(session: Session, cpo_id: str) -> InvoiceCounter:
    """Lock the CPO's counter row, creating it on first use."""
    counter = session.scalars(_COUNTER_LOCKED, {"cpo_id": cpo_id}).one_or_none()
    if counter is None:
        try:
            # Two first invoices of a new CPO race here: the loser's insert waits for the
            # winner's commit, fails, and then locks the winner's row like everyone else.
            with session.begin_nested():
                session.add(InvoiceCounter(cpo_id=cpo_id, last_number=0))
        except IntegrityError:
            pass
        counter = session.scalars(_COUNTER_LOCKED, {"cpo_id": cpo_id}).one()
    return counter


def issue_all(
    session: Session,
    settlements: Sequence[SessionSettled],
    *,
    suppliers: Mapping[str, Party],
    meter_data_url: str,
    default_country: str,
) -> list[Outcome]:
    """Issue the sessions' invoices in ``session``'s transaction, in the order given (give each
    CPO's together, CPOs in one order: a CPO's number series stays locked until the commit).

    A document is built and checked before it takes its number, so nothing can refuse it after
    that: a refused settlement takes no number and writes nothing, and no savepoint is needed
    to give a number back. The invoices, the counters and the events go out in the commit's
    one flush; what the batch needs to know is read in two queries, not per settlement.
    """
    ids = [settled.session_id for settled in settlements]
    invoiced = set(session.scalars(_INVOICED, {"ids": ids}))
    buyers = {buyer.session_id: buyer for buyer in session.scalars(_BUYERS, {"ids": ids})}
    numbering = Numbering(session)
    issued_at = datetime.now(UTC)
    outcomes: list[Outcome] = []
    with session.no_autoflush:
        for settled in settlements:
            if settled.session_id in invoiced:
                outcomes.append(None)
                continue
            try:
                customer = customer_of(buyers.get(settled.session_id), settled, default_country)
                document = _checked_document(
                    settled, customer, issued_at, suppliers, meter_data_url
                )
            except InvoiceError as error:
                outcomes.append(error)
                continue
            sequence = numbering.take(settled.cpo_id)
            number = invoice_number(settled.cpo_id, sequence)
            document = document.model_copy(update={"number": number, "sequence": sequence})
            outcomes.append(_stage(session, settled, document, issued_at))
            invoiced.add(settled.session_id)
    return outcomes


def _checked_document(
    settled: SessionSettled,
    customer: Party,
    issued_at: datetime,
    suppliers: Mapping[str, Party],
    meter_data_url: str,
) -> InvoiceDocument:
    """The invoice's document, every rule checked, not numbered yet."""
    supplier = suppliers.get(settled.cpo_id)
    if supplier is None:
        raise InvoiceError(
            f"no supplier is configured for CPO {settled.cpo_id!r} "
            "(CHARGENET_INVOICING_SUPPLIERS_FILE): an invoice without the seller's address and "
            "VAT identifier would not comply with EN 16931 (BR-08, BR-S-02)"
        )
    return build_document(
        settled,
        number=_UNNUMBERED,
        sequence=0,
        issue_date=issued_at.date(),
        supplier=supplier,
        customer=customer,
        meter_data_url=meter_data_url,
    )


def _stage(
    session: Session, settled: SessionSettled, document: InvoiceDocument, issued_at: datetime
) -> Invoice:
    """The numbered invoice and its event, added to the transaction."""
    invoice = Invoice(
        number=document.number,
        cpo_id=settled.cpo_id,
        sequence=document.sequence,
        driver_id=settled.driver_id,
        session_id=settled.session_id,
        issue_date=document.issue_date,
        currency=document.currency,
        total_excl_vat=document.total_excl_vat,
        total_vat=document.total_vat,
        total_incl_vat=document.total_incl_vat,
        document=document.model_dump_json(),
        created_at=issued_at,
    )
    session.add(invoice)
    event = InvoiceIssued(
        invoice_number=document.number,
        cpo_id=settled.cpo_id,
        driver_id=settled.driver_id,
        session_id=settled.session_id,
        total_incl_vat=document.total_incl_vat,
        currency=document.currency,
    )
    add_to_outbox(
        session,
        InvoiceIssued.topic,
        make_envelope(
            event, subject=settled.cpo_id, source=SOURCE, event_id=f"invoice-{document.number}"
        ),
    )
    return invoice


def record_buyer(session: Session, requested: SessionRequested, default_country: str) -> None:
    """Keep the session's buyer until it settles; the first request event of a session wins."""
    if session.get(Buyer, requested.session_id) is not None:
        return
    billing = requested.billing
    if billing is None:
        log.warning(
            "session %s was requested without billing details (a wallet that predates "
            "SessionRequested.billing): its invoice names the default country %s",
            requested.session_id,
            default_country,
        )
    session.add(
        Buyer(
            session_id=requested.session_id,
            driver_id=requested.driver_id,
            name=billing.name if billing else None,
            street=billing.street if billing else None,
            postcode=billing.postcode if billing else None,
            city=billing.city if billing else None,
            country=billing.country if billing else default_country,
        )
    )


def customer_of(buyer: Buyer | None, settled: SessionSettled, default_country: str) -> Party:
    """The invoice's buyer: as requested (the session's recorded ``buyer``), else the driver's
    account and the default country."""
    fallback_name = f"chargenet driver {settled.driver_id}"
    if buyer is None:
        # The request shares the settlement's partition key and comes first; only a request
        # consumed before this service recorded buyers (or lost to a dead letter) lands here.
        log.warning(
            "no request recorded for session %s: its invoice names %r in the default country %s",
            settled.session_id,
            fallback_name,
            default_country,
        )
        return Party(name=fallback_name, country=default_country)
    return Party(
        name=buyer.name or fallback_name,
        street=buyer.street,
        postcode=buyer.postcode,
        city=buyer.city,
        country=buyer.country,
    )


def refuse(session: Session, settled: SessionSettled, error: InvoiceError) -> None:
    """Record why no invoice was issued, and the event, so an operator sees it and the invoice
    can be issued once the cause is fixed (the bus does not deliver the event again)."""
    log.error("no invoice for session %s: %s", settled.session_id, error)
    row = session.get(RefusedSettlement, settled.session_id)
    if row is None:
        row = RefusedSettlement(session_id=settled.session_id, cpo_id=settled.cpo_id)
        session.add(row)
    row.reason = str(error)
    row.settled = settled.model_dump_json()


def load_document(invoice: Invoice) -> InvoiceDocument:
    return InvoiceDocument.model_validate(json.loads(invoice.document))
