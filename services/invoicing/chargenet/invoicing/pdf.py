"""The invoice PDF (reportlab) with its CII XML embedded as Factur-X (EN 16931 profile).

Rendering is deterministic (reportlab's invariant mode, and factur-x's time stamps pinned to the
issue date), so an invoice rendered again from its stored document is the same document; nothing is
kept but the JSON it renders from.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal

import facturx
import facturx.facturx as facturx_internals
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from chargenet.core.pricing.money import plain
from chargenet.invoicing.cii import cii_xml
from chargenet.invoicing.document import InvoiceDocument, Party, money

_STYLES = getSampleStyleSheet()
_BODY = ParagraphStyle("body", parent=_STYLES["Normal"], fontSize=9, leading=12)
_SMALL = ParagraphStyle("small", parent=_BODY, fontSize=7, leading=9, textColor=colors.grey)
_TITLE = ParagraphStyle("title", parent=_STYLES["Title"], alignment=0, fontSize=20)
_GRID = TableStyle(
    [
        ("FONTSIZE", (0, 0), (-1, -1), 8.5),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef4")),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.HexColor("#31577a")),
        ("LINEBELOW", (0, -1), (-1, -1), 0.3, colors.grey),
        ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
)


_CLOCK = threading.Lock()


@contextmanager
def _facturx_clock(day: date) -> Iterator[None]:
    """factur-x stamps the wall clock (to the second) into the PDF's info, its XMP and the
    attachment, and takes no date: so two renders a second apart differed. Its two clock
    functions answer the issue date while one render runs (a lock: they are module globals)."""
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    with _CLOCK:
        saved = facturx_internals._get_pdf_timestamp, facturx_internals._get_metadata_timestamp
        facturx_internals._get_pdf_timestamp = lambda date=None: moment.strftime(
            "D:%Y%m%d%H%M%S+00'00'"
        )
        facturx_internals._get_metadata_timestamp = lambda: moment.strftime(
            "%Y-%m-%dT%H:%M:%S+00:00"
        )
        try:
            yield
        finally:
            facturx_internals._get_pdf_timestamp, facturx_internals._get_metadata_timestamp = saved


def render_pdf(doc: InvoiceDocument) -> bytes:
    """The Factur-X PDF: the visible invoice with ``factur-x.xml`` attached (XSD-checked)."""
    visual, xml = _visual_pdf(doc), cii_xml(doc)
    with _facturx_clock(doc.issue_date):
        generated = facturx.generate_from_binary(
            visual,
            xml,
            flavor="factur-x",
            level="en16931",
            check_xsd=True,
            pdf_metadata={
                "author": doc.supplier.name,
                "keywords": "Factur-X, invoice, EV charging",
                "title": f"{doc.supplier.name}: Invoice {doc.number}",
                "subject": f"Invoice {doc.number} for charging session {doc.session_id}",
            },
            lang="en-GB",
        )
    return bytes(generated)


def _visual_pdf(doc: InvoiceDocument) -> bytes:
    buffer = io.BytesIO()
    template = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
        title=f"Invoice {doc.number}",
        author=doc.supplier.name,
        invariant=1,
    )
    currency = doc.currency
    story = [
        _header(doc),
        Spacer(1, 6 * mm),
        Paragraph("Invoice", _TITLE),
        _facts(doc),
        Spacer(1, 5 * mm),
        _lines(doc, currency),
        Spacer(1, 4 * mm),
        _totals(doc, currency),
        Spacer(1, 6 * mm),
        Paragraph("<b>Charging session</b>", _BODY),
        _session(doc),
        Spacer(1, 5 * mm),
        Paragraph(
            f"Paid in full on chain from the driver's escrow at settlement "
            f"(transaction <font face='Courier'>{doc.settlement_tx_hash}</font>). "
            f"Nothing is due.",
            _BODY,
        ),
        Spacer(1, 3 * mm),
        Paragraph(_meter_note(doc), _BODY),
        Spacer(1, 6 * mm),
        Paragraph(
            "The price is computed from the OCPI tariff on exact quantities; the totals are "
            "rounded once, to the currency's minor unit, and the total incl. VAT is the amount "
            "paid on chain. Lines and VAT per rate are shares of those totals, so they add up "
            "exactly. The electronic invoice (EN 16931, CII) is embedded in this PDF as "
            "factur-x.xml.",
            _SMALL,
        ),
    ]
    template.build(story)
    return buffer.getvalue()


def _party_text(title: str, party: Party, identifier: str | None = None) -> Paragraph:
    parts = [f"<b>{title}</b>", _esc(party.name)]
    parts += [_esc(v) for v in (party.street,) if v]
    locality = " ".join(v for v in (party.postcode, party.city) if v)
    if locality:
        parts.append(_esc(locality))
    if party.country:
        parts.append(party.country)
    if party.vat_id:
        parts.append(f"VAT ID: {_esc(party.vat_id)}")
    if identifier:
        parts.append(identifier)
    return Paragraph("<br/>".join(parts), _BODY)


def _header(doc: InvoiceDocument) -> Table:
    supplier = _party_text("Supplier", doc.supplier)
    customer = _party_text("Customer", doc.customer, f"Account: {_esc(doc.driver_id)}")
    table = Table([[supplier, customer]], colWidths=[87 * mm, 87 * mm])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return table


def _facts(doc: InvoiceDocument) -> Table:
    rows = [
        ["Invoice number", doc.number],
        ["Invoice date", doc.issue_date.isoformat()],
        ["Date of supply", doc.supply_date.isoformat()],
        ["Currency", doc.currency],
    ]
    table = Table(rows, colWidths=[40 * mm, 80 * mm], hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [("FONTSIZE", (0, 0), (-1, -1), 9), ("FONTNAME", (0, 0), (0, -1), "Helvetica-Bold")]
        )
    )
    return table


def _lines(doc: InvoiceDocument, currency: str) -> Table:
    rows: list[list[str]] = [
        [
            "#",
            "Description",
            "Quantity",
            "Unit",
            f"Unit price excl. VAT ({currency})",
            "VAT",
            f"Net ({currency})",
        ]
    ]
    for line in doc.lines:
        rows.append(
            [
                str(line.line),
                line.description,
                plain(line.quantity),
                line.unit,
                _price(line.unit_price),
                _rate(line.vat_rate),
                str(money(line.net, doc.currency)),
            ]
        )
    for adjustment in doc.adjustments:
        sign = "" if adjustment.charge else "-"
        rows.append(
            [
                "",
                adjustment.reason,
                "",
                "",
                "",
                _rate(adjustment.vat_rate),
                f"{sign}{money(adjustment.amount, doc.currency)}",
            ]
        )
    table = Table(
        rows, colWidths=[8 * mm, 42 * mm, 22 * mm, 14 * mm, 38 * mm, 16 * mm, 34 * mm], repeatRows=1
    )
    table.setStyle(_GRID)
    table.setStyle(
        TableStyle([("ALIGN", (1, 0), (1, -1), "LEFT"), ("ALIGN", (3, 0), (3, -1), "LEFT")])
    )
    return table


def _totals(doc: InvoiceDocument, currency: str) -> Table:
    rows = [["VAT rate", "Taxable amount", "VAT amount"]]
    for subtotal in doc.vat_subtotals:
        rows.append(
            [
                _rate(subtotal.vat_rate),
                str(money(subtotal.basis, doc.currency)),
                str(money(subtotal.vat, doc.currency)),
            ]
        )
    rows += [
        ["Total excl. VAT", "", f"{money(doc.total_excl_vat, doc.currency)} {currency}"],
        ["Total VAT", "", f"{money(doc.total_vat, doc.currency)} {currency}"],
        ["Total incl. VAT", "", f"{money(doc.total_incl_vat, doc.currency)} {currency}"],
    ]
    table = Table(rows, colWidths=[40 * mm, 40 * mm, 40 * mm], hAlign="RIGHT")
    table.setStyle(_GRID)
    table.setStyle(
        TableStyle(
            [
                ("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold"),
                ("LINEABOVE", (0, -3), (-1, -3), 0.6, colors.HexColor("#31577a")),
                ("ALIGN", (0, 0), (0, -1), "LEFT"),
            ]
        )
    )
    return table


def _session(doc: InvoiceDocument) -> Table:
    rows = [
        ["Session", doc.session_id],
        ["EVSE", doc.evse_id or "-"],
        ["Station", doc.station_id],
        [
            "Period (UTC)",
            f"{doc.supply_start:%Y-%m-%d %H:%M:%S} to {doc.supply_end:%Y-%m-%d %H:%M:%S}",
        ],
        ["Energy delivered", f"{plain(doc.energy_kwh)} kWh"],
        ["Charging time", f"{plain(doc.charging_minutes)} min"],
        ["Parking time", f"{plain(doc.parking_minutes)} min"],
        ["Tariff", doc.tariff_id],
        ["CDR", f"{doc.cdr_id} (keccak-256 {doc.cdr_hash})"],
    ]
    table = Table(rows, colWidths=[34 * mm, 140 * mm], hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [("FONTSIZE", (0, 0), (-1, -1), 8), ("FONTNAME", (0, 0), (0, -1), "Helvetica-Bold")]
        )
    )
    return table


def _meter_note(doc: InvoiceDocument) -> str:
    state = (
        "verified against the meter key registered for the station"
        if doc.meter_verified
        else ("<b>failed verification</b>; the session was flagged")
    )
    count = len(doc.signed_meter_data)
    return (
        f"Signed meter values (OCMF, {count} record{'s' if count != 1 else ''}): {state}. "
        f"Download: {_esc(doc.meter_data_url)}"
    )


def _price(value: Decimal) -> str:
    """At least two decimals (0.5 -> 0.50), more only when the price has them."""
    text = plain(value)
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def _rate(rate: Decimal | None) -> str:
    return "none" if rate is None else f"{plain(rate)} %"


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
