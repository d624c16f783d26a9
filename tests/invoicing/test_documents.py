"""The invoice's content adds up to the settled amount; the PDF opens; its XML passes the XSD."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import facturx
import pytest
from pypdf import PdfReader

from chargenet.invoicing.cii import cii_xml
from chargenet.invoicing.document import InvoiceDocument, InvoiceError, Party, build_document
from chargenet.invoicing.events import SessionSettled
from chargenet.invoicing.pdf import render_pdf

Factory = Callable[..., SessionSettled]
SUPPLIER = Party(
    name="Stromtankstelle Berlin GmbH",
    street="Invalidenstr. 117",
    postcode="10115",
    city="Berlin",
    country="DE",
    vat_id="DE123456789",
    email="billing@stromtankstelle.example",
)


def document(settled: SessionSettled) -> InvoiceDocument:
    return build_document(
        settled,
        number="INV-CPO1-00000001",
        sequence=1,
        issue_date=date(2024, 6, 4),
        supplier=SUPPLIER,
        customer=Party(name="Erika Mustermann", city="Berlin", country="DE"),
        meter_data_url="https://meter.example/{session_id}",
    )


def test_lines_and_vat_add_up_to_the_settled_amount(make_settled: Factory) -> None:
    settled = make_settled("s-1")
    doc = document(settled)
    assert doc.total_incl_vat == settled.amount_settled
    assert sum(line.net for line in doc.lines) == doc.total_excl_vat
    assert sum(v.vat for v in doc.vat_subtotals) == doc.total_vat
    assert doc.total_excl_vat + doc.total_vat == doc.total_incl_vat
    # 18.5 kWh over 50 min: 20 min before 17:00 at 0.39/kWh, 30 min after at 0.49/kWh; the only
    # TIME component (1.20/h) has no restriction, so it prices all 50 minutes; 12 min parked
    # bill 15 (5-minute steps) at 6.00/h
    assert [
        (line.description, line.quantity, line.unit, line.unit_price) for line in doc.lines
    ] == [
        ("Session fee", Decimal(1), "session", Decimal("0.50")),
        ("Energy", Decimal("7.4"), "kWh", Decimal("0.39")),
        ("Energy", Decimal("11.1"), "kWh", Decimal("0.49")),
        ("Charging time", Decimal(50), "min", Decimal("0.02")),
        ("Parking time", Decimal(15), "min", Decimal("0.1")),
    ]
    assert [line.net for line in doc.lines] == [500_000, 2_886_000, 5_439_000, 1_000_000, 1_500_000]
    assert doc.total_excl_vat == 11_325_000
    assert doc.total_vat == 2_151_750  # 19 %
    assert (doc.energy_kwh, doc.charging_minutes, doc.parking_minutes) == (
        Decimal("18.500"),
        Decimal("50.00"),
        Decimal("12.00"),
    )
    assert doc.meter_data_url == "https://meter.example/s-1"
    assert doc.settlement_tx_hash == settled.settlement_tx_hash
    assert doc.evse_id == "DE*CHN*E0001*1"


CAPPED = {
    "id": "capped",
    "currency": "EUR",
    "max_price": {"excl_vat": "5.00", "incl_vat": "5.80"},
    "elements": [
        {
            "price_components": [
                {"type": "FLAT", "price": "0.50", "vat": "7", "step_size": 1},
                {"type": "ENERGY", "price": "0.49", "vat": "19", "step_size": 1},
            ]
        }
    ],
    "last_updated": "2024-01-01T00:00:00Z",
}


def test_a_price_cap_becomes_an_allowance_and_the_xml_still_validates(
    make_settled: Factory,
) -> None:
    settled = make_settled("s-cap", tariff=CAPPED)
    doc = document(settled)
    assert (doc.total_excl_vat, doc.total_incl_vat) == (5_000_000, 5_800_000)
    assert [(a.reason, a.charge, a.amount, a.vat_rate) for a in doc.adjustments] == [
        ("Maximum session price", False, 4_565_000, Decimal(19))
    ]
    subtotals = [(v.vat_rate, v.basis, v.vat) for v in doc.vat_subtotals]
    assert subtotals == [(Decimal(7), 500_000, 35_000), (Decimal(19), 4_500_000, 765_000)]
    xml = cii_xml(doc)
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    assert b"<ram:AllowanceTotalAmount>4.565</ram:AllowanceTotalAmount>" in xml


def test_pdf_opens_and_embeds_xml_that_validates_against_the_factur_x_schema(
    make_settled: Factory, tmp_path: Path
) -> None:
    doc = document(make_settled("s-1"))
    pdf = render_pdf(doc)
    (tmp_path / "invoice.pdf").write_bytes(pdf)
    reader = PdfReader(io.BytesIO(pdf))
    text = reader.pages[0].extract_text()
    for expected in (
        "Invoice",
        "INV-CPO1-00000001",
        "DE123456789",
        "Erika Mustermann",
        "DE*CHN*E0001*1",
        "13.47675",
        "0x" + "ab" * 32,
    ):
        assert expected in text, expected
    filename, xml = facturx.get_facturx_xml_from_pdf(pdf, check_xsd=True)
    assert filename == "factur-x.xml"
    assert xml == cii_xml(doc)
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True
    assert b"<ram:GrandTotalAmount>13.47675</ram:GrandTotalAmount>" in xml
    assert b'<ram:TaxTotalAmount currencyID="EUR">2.15175</ram:TaxTotalAmount>' in xml


def test_rendering_again_gives_the_same_pdf(make_settled: Factory) -> None:
    doc = document(make_settled("s-1"))
    assert render_pdf(doc) == render_pdf(doc)


def test_an_invalid_xml_is_rejected_by_the_schema(make_settled: Factory) -> None:
    xml = cii_xml(document(make_settled("s-1")))
    broken = xml.replace(b"<ram:TypeCode>380</ram:TypeCode>", b"")
    with pytest.raises(Exception, match=r"(?i)xsd|schema|element"):
        facturx.xml_check_xsd(broken, flavor="factur-x", level="en16931")


def test_a_settlement_that_differs_from_the_cdr_price_is_refused(make_settled: Factory) -> None:
    with pytest.raises(InvoiceError, match=r"prices to .* but .* were settled"):
        document(make_settled("s-1", amount_delta=-1))
