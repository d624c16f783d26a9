"""The invoice's content adds up to the settled amount; the PDF opens; its XML passes the XSD and
the official EN 16931 schematron (see ``en16931.py``); amounts have the currency's decimals."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import facturx
import pytest
from pypdf import PdfReader

from chargenet.invoicing.cii import cii_xml
from chargenet.invoicing.document import (
    InvoiceDocument,
    InvoiceError,
    Party,
    build_document,
    check_sums,
    money,
)
from chargenet.invoicing.events import SessionSettled
from chargenet.invoicing.pdf import render_pdf
from tests.invoicing.en16931 import rule_failures, schematron_failures

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
    # exactly 0.50 + 2.886 + 5.439 + 1.00 + 1.50 = 11.325 excl. and 13.47675 incl. 19 % VAT:
    # rounded once to cents 11.33 and 13.48 (settled: 13_480_000 units), VAT 2.15 (exact
    # 2.15175). The lines are shares of 11.33: the two energy lines carry the cents (2.89, 5.44).
    assert [line.net for line in doc.lines] == [500_000, 2_890_000, 5_440_000, 1_000_000, 1_500_000]
    assert (doc.total_excl_vat, doc.total_vat, doc.total_incl_vat) == (
        11_330_000,
        2_150_000,
        13_480_000,
    )
    assert [(v.vat_rate, v.basis, v.vat) for v in doc.vat_subtotals] == [
        (Decimal(19), 11_330_000, 2_150_000)
    ]
    assert money(doc.total_incl_vat, doc.currency) == Decimal("13.48")
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
    # capped at 5.00 / 5.80: lines 0.50 (7 %) and 18.5 kWh x 0.49 = 9.065 -> 9.07 (19 %), the
    # allowance 4.565 -> 4.57 at the highest rate. VAT 0.80 = 5.80 - 5.00, exactly 0.035 at 7 %
    # and 0.765 at 19 %: both half a cent over, so the tie goes to the first rate, 0.04 / 0.76.
    assert (doc.total_excl_vat, doc.total_incl_vat) == (5_000_000, 5_800_000)
    assert [line.net for line in doc.lines] == [500_000, 9_070_000]
    assert [(a.reason, a.charge, a.amount, a.vat_rate) for a in doc.adjustments] == [
        ("Maximum session price", False, 4_570_000, Decimal(19))
    ]
    subtotals = [(v.vat_rate, v.basis, v.vat) for v in doc.vat_subtotals]
    assert subtotals == [(Decimal(7), 500_000, 40_000), (Decimal(19), 4_500_000, 760_000)]
    xml = cii_xml(doc)
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    assert b"<ram:AllowanceTotalAmount>4.57</ram:AllowanceTotalAmount>" in xml
    assert rule_failures(xml) == []


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
        "13.48 EUR",
        "0x" + "ab" * 32,
    ):
        assert expected in text, expected
    filename, xml = facturx.get_facturx_xml_from_pdf(pdf, check_xsd=True)
    assert filename == "factur-x.xml"
    assert xml == cii_xml(doc)
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931") is True
    assert b"<ram:GrandTotalAmount>13.48</ram:GrandTotalAmount>" in xml
    assert b'<ram:TaxTotalAmount currencyID="EUR">2.15</ram:TaxTotalAmount>' in xml
    assert b"<ram:LineTotalAmount>2.89</ram:LineTotalAmount>" in xml


def test_rendering_again_gives_the_same_pdf(make_settled: Factory) -> None:
    doc = document(make_settled("s-1"))
    first = render_pdf(doc)
    time.sleep(1.05)  # factur-x stamps the clock to the second: renders a second apart must agree
    assert render_pdf(doc) == first


def test_an_invalid_xml_is_rejected_by_the_schema(make_settled: Factory) -> None:
    xml = cii_xml(document(make_settled("s-1")))
    broken = xml.replace(b"<ram:TypeCode>380</ram:TypeCode>", b"")
    with pytest.raises(Exception, match=r"(?i)xsd|schema|element"):
        facturx.xml_check_xsd(broken, flavor="factur-x", level="en16931")


def test_a_settlement_that_differs_from_the_cdr_price_is_refused(make_settled: Factory) -> None:
    with pytest.raises(InvoiceError, match=r"prices to .* but .* were settled"):
        document(make_settled("s-1", amount_delta=-1))


def test_a_late_budget_stop_is_invoiced_with_the_cap_as_an_allowance(
    make_settled: Factory,
) -> None:
    settled = make_settled("s-late", locked=10_000_000)  # the session prices to 13.48 EUR
    assert (settled.price_before_cap, settled.amount_settled) == (13_480_000, 10_000_000)
    doc = document(settled)
    # 10.00 incl. 19 % VAT: 8.40 excl. (10 / 1.19 = 8.4034, half up), VAT 1.60; the lines keep
    # the tariff's prices and the cut, exactly (13.48 - 10.00) / 1.19 = 2.9243 excl. VAT, is the
    # allowance: both are shares of the rounded 8.40, so each is within a cent of its exact value
    assert (doc.total_excl_vat, doc.total_vat, doc.total_incl_vat) == (
        8_400_000,
        1_600_000,
        10_000_000,
    )
    lines = sum(line.net for line in doc.lines)
    allowance = lines - 8_400_000
    assert abs(allowance - 2_924_370) < 10_000
    assert [(a.reason, a.charge, a.amount, a.vat_rate) for a in doc.adjustments] == [
        ("Capped at the amount locked in escrow", False, allowance, Decimal(19))
    ]
    assert [(v.vat_rate, v.basis, v.vat) for v in doc.vat_subtotals] == [
        (Decimal(19), 8_400_000, 1_600_000)
    ]
    check_sums(doc)
    xml = cii_xml(doc)
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    assert b"<ram:GrandTotalAmount>10.00</ram:GrandTotalAmount>" in xml
    assert f"<ram:AllowanceTotalAmount>{money(allowance, 'EUR')}<".encode() in xml
    assert rule_failures(xml) == []
    assert schematron_failures(xml) == []
    _name, embedded = facturx.get_facturx_xml_from_pdf(render_pdf(doc), check_xsd=True)
    assert embedded == xml
    print(f"capped invoice: lines {lines}, allowance {allowance}, total {doc.total_incl_vat}")


def test_a_cap_that_does_not_match_is_still_refused(make_settled: Factory) -> None:
    settled = make_settled("s-late", locked=10_000_000)
    # the CDR's price is not what the settlement says it was before the cap
    with pytest.raises(InvoiceError, match=r"a price of 13480001 before the cap"):
        document(settled.model_copy(update={"price_before_cap": 13_480_001}))
    # more settled than the driver locked
    with pytest.raises(InvoiceError, match=r"at most the locked maximum"):
        document(settled.model_copy(update={"amount_locked": 9_990_000}))
    # a settled amount below the CDR's capped total_cost is a mismatch, not a cap
    with pytest.raises(InvoiceError, match=r"total_cost .* is not the price capped"):
        document(settled.model_copy(update={"amount_settled": 9_990_000}))
    # and without a cap, any difference is refused as before
    uncapped = make_settled("s-2")
    with pytest.raises(InvoiceError, match=r"prices to .* but .* were settled"):
        document(uncapped.model_copy(update={"amount_settled": uncapped.amount_settled - 1}))


def tariff_in(currency: str, energy_price: str) -> dict[str, object]:
    return {
        "id": f"ac-{currency.lower()}",
        "currency": currency,
        "elements": [
            {
                "price_components": [
                    {"type": "FLAT", "price": "0.345", "vat": "7", "step_size": 1},
                    {"type": "ENERGY", "price": energy_price, "vat": "19", "step_size": 1},
                    {"type": "PARKING_TIME", "price": "1.005", "step_size": 60},
                ]
            }
        ],
        "last_updated": "2024-01-01T00:00:00Z",
    }


NO_VAT = {
    "id": "no-vat",
    "currency": "EUR",
    "elements": [{"price_components": [{"type": "ENERGY", "price": "0.3333", "step_size": 1}]}],
    "last_updated": "2024-01-01T00:00:00Z",
}


def outside_vat(settled: SessionSettled) -> InvoiceDocument:
    """The invoice of a seller without a VAT id (its no-VAT items are then "O")."""
    return build_document(
        settled,
        number="INV-CPO1-00000002",
        sequence=2,
        issue_date=date(2024, 6, 4),
        supplier=SUPPLIER.model_copy(update={"vat_id": None}),
        customer=Party(name="Erika Mustermann", city="Berlin", country="DE"),
        meter_data_url="https://meter.example/{session_id}",
    )


def invoices(make_settled: Factory) -> dict[str, InvoiceDocument]:
    """Sub-cent exact amounts at three VAT categories (7 %, 19 %, none), a min and a max
    clamp, yen, and a tariff without VAT."""
    cases = {
        "s-1": make_settled("s-1"),
        "three-rates": make_settled("s-3", tariff=tariff_in("EUR", "0.3333"), park_minutes=7),
        "capped": make_settled("s-cap", tariff=CAPPED),
        "minimum": make_settled(
            "s-min",
            kwh="0.4",
            tariff=tariff_in("EUR", "0.3333") | {"min_price": {"excl_vat": "3.333"}},
        ),
        "yen": make_settled("s-yen", tariff=tariff_in("JPY", "39.5")),
        "no VAT": make_settled("s-novat", tariff=NO_VAT),
    }
    docs = {name: document(settled) for name, settled in cases.items()}
    for name, doc in docs.items():
        assert doc.total_incl_vat == cases[name].amount_settled, name
    return docs


def test_every_invoice_adds_up_with_two_decimals_at_most(make_settled: Factory) -> None:
    # BR-DEC and the sum rules, re-checked on the XML with exact decimals (runs everywhere)
    for name, doc in invoices(make_settled).items():
        assert rule_failures(cii_xml(doc)) == [], name
        print(name, money(doc.total_incl_vat, doc.currency), doc.currency)
    assert {v.vat_category for v in invoices(make_settled)["no VAT"].vat_subtotals} == {"E"}
    outside = outside_vat(make_settled("s-novat", tariff=NO_VAT))
    assert {v.vat_category for v in outside.vat_subtotals} == {"O"}
    assert rule_failures(cii_xml(outside)) == []


def test_every_invoice_passes_the_official_en16931_schematron(make_settled: Factory) -> None:
    # no failed assertion of the official EN 16931 CII schematron, fatal or warning
    for name, doc in invoices(make_settled).items():
        failures = schematron_failures(cii_xml(doc))
        print(name, money(doc.total_incl_vat, doc.currency), doc.currency, failures)
        assert failures == [], name
    # not subject to VAT (O) is right for a seller without a VAT id, and its amounts and
    # categories pass; BR-CO-26 then wants another seller identifier, which Party cannot carry
    outside = outside_vat(make_settled("s-novat", tariff=NO_VAT))
    assert [f.split()[0] for f in schematron_failures(cii_xml(outside))] == ["BR-CO-26"]
    # and the schematron is live: a total that does not add up fails it
    doc = invoices(make_settled)["s-1"]
    broken = doc.model_copy(update={"total_vat": doc.total_vat + 10_000})
    assert "BR-CO-15" in [f.split()[0] for f in schematron_failures(cii_xml(broken))]


def test_amounts_have_the_currency_decimals(make_settled: Factory) -> None:
    # JPY has no minor unit: 18.5 kWh x 39.5 = 730.75 + 0.345 + 12 min x 1.005/60 = 731.296
    # excl. -> 731 yen; every amount in the XML is whole yen
    doc = document(make_settled("s-yen", tariff=tariff_in("JPY", "39.5")))
    assert doc.total_excl_vat == 731_000_000
    xml = cii_xml(doc)
    assert b"<ram:TaxBasisTotalAmount>731</ram:TaxBasisTotalAmount>" in xml
    assert b"<ram:GrandTotalAmount>" + str(doc.total_incl_vat // 10**6).encode() in xml
    # EN 16931 allows two decimals at most: a KWD (three decimals) invoice is refused
    with pytest.raises(InvoiceError, match=r"KWD amounts have 3 decimals .* at most 2"):
        document(make_settled("s-kwd", tariff=tariff_in("KWD", "0.1234")))


def test_a_broken_sum_is_caught_before_issuing(make_settled: Factory) -> None:
    doc = document(make_settled("s-1"))
    broken = doc.model_copy(update={"total_vat": doc.total_vat + 10_000})
    with pytest.raises(InvoiceError, match=r"BR-CO-14 .*BR-CO-15"):
        check_sums(broken)
    assert "BR-CO-15" in rule_failures(cii_xml(broken))
