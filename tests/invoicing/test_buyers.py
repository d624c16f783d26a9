"""The invoice's parties: the buyer from the session's request (BG-7/BG-8, BR-10/BR-11) in the JSON
document, the CII XML and the PDF; the default country without one; and the suppliers file
checked at start-up (BR-08/BR-09, BR-S-02), so an unconfigured CPO's settlement is refused."""

from __future__ import annotations

import io
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import facturx
import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.db import Database
from chargenet.core.envelope import Envelope, make_envelope
from chargenet.core.events import BillingDetails
from chargenet.core.settings import ConfigurationError
from chargenet.invoicing.cii import cii_xml
from chargenet.invoicing.consumer import SessionsConsumer
from chargenet.invoicing.document import InvoiceDocument
from chargenet.invoicing.events import SessionRequested, SessionSettled
from chargenet.invoicing.issuing import load_document
from chargenet.invoicing.main import create_app
from chargenet.invoicing.models import Buyer, Invoice, RefusedSettlement
from chargenet.invoicing.pdf import render_pdf
from chargenet.invoicing.settings import InvoicingSettings
from chargenet.invoicing.suppliers import load_suppliers, parse_suppliers
from tests.invoicing.conftest import SUPPLIERS, TARIFF
from tests.invoicing.en16931 import rule_failures, schematron_failures

Factory = Callable[..., SessionSettled]
URL = "https://meter.example/{session_id}"
RAM = "{urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100}"
ERIKA = BillingDetails(
    name="Erika Mustermann",
    street="Heidestraße 17",
    postcode="51147",
    city="Köln",
    country="DE",
)
VALID_SUPPLIER: dict[str, Any] = {
    "name": "Amperio GmbH",
    "street": "Energiestraße 1",
    "postcode": "10115",
    "city": "Berlin",
    "country": "DE",
    "vat_id": "DE123456789",
}


def requested(
    session_id: str, driver_id: str = "driver-1", billing: BillingDetails | None = None
) -> Envelope:
    """The wallet's request as it travels on the bus (the fields invoicing does not read are
    what a real request carries, not read here)."""
    event = SessionRequested(
        session_id=session_id,
        driver_id=driver_id,
        driver_address="0x" + "11" * 20,
        cpo_id="CPO1",
        station_id="0x" + "22" * 32,
        charge_point_id="CP-1",
        connector_id=1,
        max_amount=50_000_000,
        id_token="CN0123456789ABCDEF",
        idempotency_key=f"k-{session_id}",
        chain_session_id="0x" + "33" * 32,
        driver_nonce=1,
        expiry=datetime(2024, 6, 3, 20, 40, tzinfo=UTC),
        authorisation_r="0x" + "44" * 32,
        authorisation_vs="0x" + "55" * 32,
        tariff=TARIFF,
        billing=billing,
    )
    return make_envelope(event, subject=session_id, source="chargenet/wallet")


def settled_envelope(settled: SessionSettled) -> Envelope:
    return make_envelope(settled, subject=settled.session_id, source="chargenet/escrow")


def invoice_of(db: Database, session_id: str) -> InvoiceDocument:
    with db.session() as session:
        invoice = session.scalars(sa.select(Invoice).where(Invoice.session_id == session_id)).one()
        return load_document(invoice)


def buyer_address(xml: bytes) -> dict[str, str | None]:
    """BG-7's name and BG-8's fields (BT-50, BT-53, BT-52, BT-55) as the CII XML states them."""
    buyer = ET.fromstring(xml).find(f".//{RAM}BuyerTradeParty")
    assert buyer is not None
    address = buyer.find(f"{RAM}PostalTradeAddress")
    assert address is not None, "no BG-8 buyer postal address"
    return {
        "name": buyer.findtext(f"{RAM}Name"),
        "street": address.findtext(f"{RAM}LineOne"),
        "postcode": address.findtext(f"{RAM}PostcodeCode"),
        "city": address.findtext(f"{RAM}CityName"),
        "country": address.findtext(f"{RAM}CountryID"),
    }


def seller_vat_id(xml: bytes) -> str | None:
    seller = ET.fromstring(xml).find(f".//{RAM}SellerTradeParty")
    assert seller is not None
    registration = seller.find(f"{RAM}SpecifiedTaxRegistration/{RAM}ID")
    assert registration is not None and registration.get("schemeID") == "VA"
    return registration.text


def pdf_text(document: InvoiceDocument) -> str:
    pdf = render_pdf(document)
    _name, embedded = facturx.get_facturx_xml_from_pdf(pdf, check_xsd=True)
    assert embedded == cii_xml(document)
    return PdfReader(io.BytesIO(pdf)).pages[0].extract_text()


@pytest.mark.postgres
def test_the_drivers_billing_details_are_the_invoices_buyer(
    postgres_db: Database, make_settled: Factory
) -> None:
    consumer = SessionsConsumer(postgres_db, SUPPLIERS, URL, default_country="DE")
    consumer(requested("s-erika", "erika", ERIKA))
    consumer(settled_envelope(make_settled("s-erika", driver_id="erika")))

    document = invoice_of(postgres_db, "s-erika")
    stored = json.loads(document.model_dump_json())["customer"]
    assert stored == {
        "name": "Erika Mustermann",
        "street": "Heidestraße 17",
        "postcode": "51147",
        "city": "Köln",
        "country": "DE",
        "vat_id": None,
        "email": None,
    }
    xml = cii_xml(document)
    assert buyer_address(xml) == {
        "name": "Erika Mustermann",
        "street": "Heidestraße 17",
        "postcode": "51147",
        "city": "Köln",
        "country": "DE",
    }
    assert seller_vat_id(xml) == SUPPLIERS["CPO1"].vat_id
    assert rule_failures(xml) == []
    assert schematron_failures(xml) == []  # BR-08..BR-11 and BR-S-02 among them
    text = pdf_text(document)
    for expected in ("Erika Mustermann", "Heidestraße 17", "51147 Köln", "DE", "VAT ID: DE"):
        assert expected in text, expected
    assert f"VAT ID: {SUPPLIERS['CPO1'].vat_id}" in text


@pytest.mark.postgres
def test_a_driver_without_billing_details_is_billed_in_the_default_country(
    postgres_db: Database, make_settled: Factory
) -> None:
    # The wallet sends the default country itself when the driver gave nothing.
    consumer = SessionsConsumer(postgres_db, SUPPLIERS, URL, default_country="DE")
    consumer(requested("s-anon", "anon", BillingDetails(country="DE")))
    consumer(settled_envelope(make_settled("s-anon", driver_id="anon")))
    document = invoice_of(postgres_db, "s-anon")
    assert document.customer.model_dump(exclude_none=True) == {
        "name": "chargenet driver anon",
        "country": "DE",
    }
    xml = cii_xml(document)
    assert buyer_address(xml) == {
        "name": "chargenet driver anon",
        "street": None,
        "postcode": None,
        "city": None,
        "country": "DE",
    }
    assert schematron_failures(xml) == []
    assert "chargenet driver anon" in pdf_text(document)


@pytest.mark.postgres
def test_a_missing_request_falls_back_to_the_default_country_and_says_so(
    postgres_db: Database, make_settled: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = SessionsConsumer(postgres_db, SUPPLIERS, URL, default_country="AT")
    with caplog.at_level(logging.WARNING, logger="chargenet.invoicing.issuing"):
        consumer(settled_envelope(make_settled("s-lost", driver_id="lost")))
    assert "no request recorded for session s-lost" in caplog.text
    document = invoice_of(postgres_db, "s-lost")
    assert (document.customer.name, document.customer.country) == ("chargenet driver lost", "AT")
    assert buyer_address(cii_xml(document))["country"] == "AT"


@pytest.mark.postgres
def test_a_redelivered_or_repeated_request_keeps_the_first_buyer(
    postgres_db: Database, make_settled: Factory
) -> None:
    consumer = SessionsConsumer(postgres_db, SUPPLIERS, URL)
    first = requested("s-1", billing=ERIKA)
    consumer(first)
    consumer(first)  # the bus redelivers: the inbox drops it
    changed = ERIKA.model_copy(update={"city": "Bonn"})
    consumer(requested("s-1", billing=changed))  # republished under another id
    with postgres_db.session() as session:
        buyers = session.scalars(sa.select(Buyer)).all()
        assert [(b.session_id, b.city) for b in buyers] == [("s-1", "Köln")]
    consumer(settled_envelope(make_settled("s-1")))
    assert invoice_of(postgres_db, "s-1").customer.city == "Köln"


@pytest.mark.postgres
def test_a_cpo_without_a_supplier_is_refused_not_invoiced(
    postgres_db: Database, make_settled: Factory
) -> None:
    consumer = SessionsConsumer(postgres_db, SUPPLIERS, URL)
    consumer(requested("s-x", billing=ERIKA))
    consumer(settled_envelope(make_settled("s-x", cpo_id="CPO-UNKNOWN")))
    consumer(settled_envelope(make_settled("s-y", cpo_id="CPO1")))
    with postgres_db.session() as session:
        refused = session.get(RefusedSettlement, "s-x")
        assert refused is not None and refused.cpo_id == "CPO-UNKNOWN"
        assert "no supplier is configured for CPO 'CPO-UNKNOWN'" in refused.reason
        numbers = session.scalars(sa.select(Invoice.number)).all()
    assert numbers == ["INV-CPO1-00000001"]  # nothing numbered for the refused one


NO_VAT_TARIFF = {
    "id": "no-vat",
    "currency": "EUR",
    "elements": [{"price_components": [{"type": "ENERGY", "price": "0.30", "step_size": 1}]}],
    "last_updated": "2024-01-01T00:00:00Z",
}


def test_a_supplier_without_a_vat_registration_invoices_only_tariffs_without_vat(
    sqlite_db: Database, make_settled: Factory
) -> None:
    small = parse_suppliers({"CPO1": {**VALID_SUPPLIER, "vat_id": None, "vat_registered": False}})
    consumer = SessionsConsumer(sqlite_db, small, URL)
    consumer(settled_envelope(make_settled("s-vat")))  # 19 % VAT
    consumer(settled_envelope(make_settled("s-free", tariff=NO_VAT_TARIFF)))
    with sqlite_db.session() as session:
        refused = session.get(RefusedSettlement, "s-vat")
        assert refused is not None
        assert "not VAT-registered" in refused.reason and "19 %" in refused.reason
    document = invoice_of(sqlite_db, "s-free")
    assert {v.vat_category for v in document.vat_subtotals} == {"O"}
    assert document.supplier.vat_id is None


def test_the_suppliers_file_is_checked_at_start_up(tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"cpo-a": VALID_SUPPLIER, "cpo-b": {**VALID_SUPPLIER, "vat_id": None}},
            "supplier 'cpo-b': vat_id: required",
        ),
        (
            {"cpo-c": {**VALID_SUPPLIER, "vat_id": "123456789"}},
            "supplier 'cpo-c': vat_id: '123456789' is not a VAT identifier",
        ),
        (
            {"cpo-d": {**VALID_SUPPLIER, "vat_id": "DE1"}},
            "supplier 'cpo-d': vat_id: 'DE1' is not a VAT identifier",
        ),
        ({"cpo-e": {"name": "No Address GmbH", "country": "DE"}}, "supplier 'cpo-e': street"),
        ({"cpo-f": {**VALID_SUPPLIER, "country": "XX"}}, "supplier 'cpo-f': country: 'XX'"),
        (
            {"cpo-g": {**VALID_SUPPLIER, "vat_registered": False}},
            "supplier 'cpo-g': vat_id: given, but \"vat_registered\" is false",
        ),
        ({"cpo-h": {**VALID_SUPPLIER, "name": ""}}, "supplier 'cpo-h': name"),
    ]
    for n, (content, message) in enumerate(cases):
        path = tmp_path / f"suppliers-{n}.json"
        path.write_text(json.dumps(content))
        with pytest.raises(ConfigurationError) as failure:
            load_suppliers(path)
        assert "CHARGENET_INVOICING_SUPPLIERS_FILE" in str(failure.value)
        assert message in str(failure.value), str(failure.value)
    good = tmp_path / "suppliers.json"
    good.write_text(json.dumps({"cpo-a": VALID_SUPPLIER}))
    assert load_suppliers(good)["cpo-a"].vat_id == "DE123456789"


def test_the_service_does_not_start_with_a_supplier_without_vat_id(
    sqlite_db: Database, tmp_path: Path
) -> None:
    path = tmp_path / "suppliers.json"
    path.write_text(json.dumps({"cpo-b": {**VALID_SUPPLIER, "vat_id": None}}))
    settings = InvoicingSettings(invoicing_suppliers_file=path)
    with pytest.raises(ConfigurationError, match=r"supplier 'cpo-b': vat_id: required"):
        create_app(settings, InMemoryBus(), sqlite_db)


def test_the_demo_plans_suppliers_are_valid(tmp_path: Path) -> None:
    """``chargenet demo`` and ``chargenet up`` write the plan's suppliers for invoicing."""
    from chargenet.cli.network.plan import Plan, Ports, demo_cpos, fresh_keys, fresh_tokens

    cpos = demo_cpos()
    plan = Plan(cpos, fresh_keys(cpos), fresh_tokens(), Ports.ephemeral(), "inprocess", {})
    path = tmp_path / "suppliers.json"
    path.write_text(json.dumps(plan.suppliers()))
    suppliers = load_suppliers(path)
    assert sorted(suppliers) == [cpo.cpo_id for cpo in cpos]
    assert all(p.vat_id and p.country and p.street and p.city for p in suppliers.values())


def test_the_default_buyer_country_must_be_a_country() -> None:
    with pytest.raises(ValueError, match="'XX' is not an ISO 3166-1 alpha-2 country code"):
        InvoicingSettings(invoicing_default_buyer_country="XX")
    assert InvoicingSettings().invoicing_default_buyer_country == "DE"
