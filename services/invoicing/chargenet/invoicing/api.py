"""REST: a driver's or a CPO's own invoices, as JSON, PDF (Factur-X) or CII XML, and a CPO's
settlements that were refused an invoice, with the reason."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response

from chargenet.core.auth import CurrentPrincipal, Principal, Role
from chargenet.core.db import Database
from chargenet.core.errors import Forbidden, NotFound
from chargenet.core.http import Offset
from chargenet.invoicing.cii import cii_xml
from chargenet.invoicing.document import money
from chargenet.invoicing.issuing import load_document
from chargenet.invoicing.models import Invoice, RefusedSettlement
from chargenet.invoicing.pdf import render_pdf

router = APIRouter(prefix="/v1/invoices", tags=["invoices"])
refused_router = APIRouter(prefix="/v1/refused-settlements", tags=["invoices"])


def _owned_by(who: Principal) -> sa.ColumnElement[bool]:
    column = Invoice.driver_id if who.role is Role.DRIVER else Invoice.cpo_id
    return column == who.subject


def _summary(invoice: Invoice) -> dict[str, Any]:
    return {
        "number": invoice.number,
        "cpo_id": invoice.cpo_id,
        "driver_id": invoice.driver_id,
        "session_id": invoice.session_id,
        "issue_date": invoice.issue_date.isoformat(),
        "currency": invoice.currency,
        "total_excl_vat": invoice.total_excl_vat,
        "total_vat": invoice.total_vat,
        "total_incl_vat": invoice.total_incl_vat,
        "total_incl_vat_display": str(money(invoice.total_incl_vat, invoice.currency)),
    }


def _get(request: Request, who: Principal, number: str) -> Invoice:
    if "\0" in number:  # no invoice number holds one, and PostgreSQL cannot compare it (500)
        raise NotFound(f"no invoice {number}")
    db: Database = request.app.state.db
    with db.session() as session:
        invoice = session.scalars(
            sa.select(Invoice).where(Invoice.number == number, _owned_by(who))
        ).one_or_none()
    if invoice is None:
        # Another party's invoice is reported as absent, not forbidden: its existence is private.
        raise NotFound(f"no invoice {number}")
    return invoice


@router.get("")
def list_invoices(
    request: Request,
    who: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    db: Database = request.app.state.db
    with db.session() as session:
        rows = session.scalars(
            sa.select(Invoice)
            .where(_owned_by(who))
            .order_by(Invoice.created_at.desc(), Invoice.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return {"invoices": [_summary(row) for row in rows], "limit": limit, "offset": offset}


@router.get("/{number}")
def get_invoice(request: Request, who: CurrentPrincipal, number: str) -> dict[str, Any]:
    document = load_document(_get(request, who, number))
    result: dict[str, Any] = document.model_dump(mode="json")
    return result


@router.get("/{number}/pdf")
def get_pdf(request: Request, who: CurrentPrincipal, number: str) -> Response:
    document = load_document(_get(request, who, number))
    return Response(
        render_pdf(document),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{number}.pdf"'},
    )


@router.get("/{number}/xml")
def get_xml(request: Request, who: CurrentPrincipal, number: str) -> Response:
    document = load_document(_get(request, who, number))
    return Response(cii_xml(document), media_type="application/xml")


@refused_router.get("")
def list_refused(
    request: Request,
    who: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """A CPO's settlements no invoice was issued for, with the reason (e.g. no supplier)."""
    if who.role is not Role.CPO:
        raise Forbidden("only a CPO sees its refused settlements")
    db: Database = request.app.state.db
    with db.session() as session:
        rows = session.scalars(
            sa.select(RefusedSettlement)
            .where(RefusedSettlement.cpo_id == who.subject)
            .order_by(RefusedSettlement.created_at.desc(), RefusedSettlement.session_id)
            .limit(limit)
            .offset(offset)
        ).all()
        refused = [
            {
                "session_id": row.session_id,
                "cpo_id": row.cpo_id,
                "reason": row.reason,
                "created_at": row.created_at.isoformat(),
            }
            for row in rows
        ]
    return {"refused": refused, "limit": limit, "offset": offset}
