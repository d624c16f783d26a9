"""Issuing an invoice for a settled session: the gapless number and the insert, in one transaction.

Gapless per CPO: the CPO's counter row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
serialises writers on its database lock, which this transaction already holds because the inbox
row was written first), incremented, and the invoice inserted in the same transaction. A failure
anywhere rolls the increment back with it, so a number is used if and only if its invoice exists.

Idempotent per session: the consumer runs this through the inbox (one effect per event id), and a
second settled event for the same session under another id finds the invoice and does nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chargenet.core.db.outbox import add_to_outbox
from chargenet.core.envelope import make_envelope
from chargenet.core.settings import fail
from chargenet.invoicing.document import InvoiceDocument, InvoiceError, Party, build_document
from chargenet.invoicing.events import InvoiceIssued, SessionSettled
from chargenet.invoicing.models import Invoice, InvoiceCounter, RefusedSettlement

log = logging.getLogger(__name__)
SOURCE = "chargenet/invoicing"
_SUPPLIERS = TypeAdapter(dict[str, Party])


def load_suppliers(path: Path | None) -> dict[str, Party]:
    """The CPOs' supplier details from a JSON file; a configuration error names the problem."""
    if path is None:
        return {}
    try:
        return _SUPPLIERS.validate_json(path.read_bytes())
    except OSError as error:
        raise fail(
            f"CHARGENET_INVOICING_SUPPLIERS_FILE: cannot read {path}: {error.strerror}"
        ) from None
    except ValidationError as error:
        raise fail(f"CHARGENET_INVOICING_SUPPLIERS_FILE: {path} is invalid: {error}") from None


def invoice_number(cpo_id: str, sequence: int) -> str:
    return f"INV-{cpo_id}-{sequence:08d}"


def next_number(session: Session, cpo_id: str) -> int:
    """Lock the CPO's counter row (creating it on first use) and take the next number."""
    query = sa.select(InvoiceCounter).where(InvoiceCounter.cpo_id == cpo_id).with_for_update()
    counter = session.scalars(query).one_or_none()
    if counter is None:
        try:
            # Two first invoices of a new CPO race here: the loser's insert waits for the
            # winner's commit, fails, and then locks the winner's row like everyone else.
            with session.begin_nested():
                session.add(InvoiceCounter(cpo_id=cpo_id, last_number=0))
        except IntegrityError:
            pass
        counter = session.scalars(query).one()
    counter.last_number += 1
    session.flush()
    return counter.last_number


def issue(
    session: Session,
    settled: SessionSettled,
    *,
    suppliers: Mapping[str, Party],
    meter_data_url: str,
    now: datetime | None = None,
) -> Invoice | None:
    """Issue the session's invoice in ``session``'s transaction; None if it already exists."""
    existing = session.scalars(
        sa.select(Invoice).where(Invoice.session_id == settled.session_id)
    ).one_or_none()
    if existing is not None:
        return None
    issued_at = now or datetime.now(UTC)
    supplier = suppliers.get(settled.cpo_id) or Party(name=settled.cpo_id)
    customer = Party(name=f"chargenet driver {settled.driver_id}")
    sequence = next_number(session, settled.cpo_id)
    number = invoice_number(settled.cpo_id, sequence)
    document = build_document(
        settled,
        number=number,
        sequence=sequence,
        issue_date=issued_at.date(),
        supplier=supplier,
        customer=customer,
        meter_data_url=meter_data_url,
    )
    invoice = Invoice(
        number=number,
        cpo_id=settled.cpo_id,
        sequence=sequence,
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
        invoice_number=number,
        cpo_id=settled.cpo_id,
        driver_id=settled.driver_id,
        session_id=settled.session_id,
        total_incl_vat=document.total_incl_vat,
        currency=document.currency,
    )
    add_to_outbox(
        session,
        InvoiceIssued.topic,
        make_envelope(event, subject=settled.cpo_id, source=SOURCE, event_id=f"invoice-{number}"),
    )
    session.flush()
    return invoice


def refuse(session: Session, settled: SessionSettled, error: InvoiceError) -> None:
    """Record why no invoice was issued, so an operator sees it (the event is not retried)."""
    log.error("no invoice for session %s: %s", settled.session_id, error)
    if session.get(RefusedSettlement, settled.session_id) is None:
        session.add(
            RefusedSettlement(
                session_id=settled.session_id, cpo_id=settled.cpo_id, reason=str(error)
            )
        )


def load_document(invoice: Invoice) -> InvoiceDocument:
    return InvoiceDocument.model_validate(json.loads(invoice.document))
