"""A driver's billing details: the REST endpoint (defaults, 4xx with a reason), the account page's
form, and the details travelling in ``SessionRequested`` to invoicing's buyer of the invoice."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from chargenet.core.auth import Role, issue_token
from chargenet.core.db import Database
from chargenet.core.events import SessionRequested
from chargenet.core.settings import DEVELOPMENT_SECRET
from chargenet.invoicing.cii import cii_xml
from chargenet.invoicing.consumer import SessionsConsumer
from chargenet.invoicing.issuing import load_document
from chargenet.invoicing.main import migrate as migrate_invoicing
from chargenet.invoicing.models import Invoice
from chargenet.wallet.settings import WalletSettings
from tests.invoicing.conftest import envelope_of, settled_event, supplier
from tests.wallet.harness import CPO_ID, Driver, World, wait_for

EUR = 1_000_000
BILLING = "/v1/me/billing"
ERIKA = {
    "name": "Erika Mustermann",
    "street": "Heidestraße 17",
    "postcode": "51147",
    "city": "Köln",
    "country": "DE",
}


def test_billing_details_default_then_set(env: World) -> None:
    driver = env.driver()
    answer = env.wallet.get(BILLING, headers=driver.headers)
    assert answer.status_code == 200
    assert answer.json() == {
        "name": None,
        "street": None,
        "postcode": None,
        "city": None,
        "country": "DE",  # the wallet's default billing country
        "default": True,
    }
    saved = env.wallet.put(BILLING, json=ERIKA, headers=driver.headers)
    assert saved.status_code == 200, saved.text
    assert saved.json() == {**ERIKA, "default": False}
    assert env.wallet.get(BILLING, headers=driver.headers).json() == {**ERIKA, "default": False}
    # Only the country is required; blanks clear a field; the code is read in any case.
    minimal = env.wallet.put(
        BILLING, json={"country": " nl ", "city": "  "}, headers=driver.headers
    )
    assert minimal.json() == {
        "name": None,
        "street": None,
        "postcode": None,
        "city": None,
        "country": "NL",
        "default": False,
    }


def test_bad_billing_details_are_refused_with_the_reason(env: World) -> None:
    driver = env.driver()
    cases = [
        ({**ERIKA, "country": "XX"}, 422, r"country: 'XX' is not an ISO 3166-1 alpha-2"),
        ({**ERIKA, "country": "DEU"}, 422, r"country: 'DEU' is not an ISO 3166-1 alpha-2"),
        ({**ERIKA, "country": ""}, 422, r"country: required"),
        ({"name": "Erika"}, 422, r"country"),  # no country at all
        ({**ERIKA, "name": "x" * 201}, 422, r"name: at most 200 characters"),
        ({**ERIKA, "postcode": "1" * 21}, 422, r"postcode: at most 20 characters"),
        ({**ERIKA, "street": "Line 1\nLine 2"}, 422, r"street: control characters"),
        ({**ERIKA, "vat_id": "DE1"}, 422, r"vat_id"),  # not a field of the details
    ]
    for body, status, reason in cases:
        answer = env.wallet.put(BILLING, json=body, headers=driver.headers)
        assert answer.status_code == status, (body, answer.text)
        assert re.search(reason, answer.text), (reason, answer.text)
    # Nothing was stored by a refused request.
    assert env.wallet.get(BILLING, headers=driver.headers).json()["default"] is True
    assert env.wallet.put(BILLING, json=ERIKA).status_code == 401
    cpo = {"Authorization": f"Bearer {issue_token(CPO_ID, Role.CPO, DEVELOPMENT_SECRET)}"}
    assert env.wallet.put(BILLING, json=ERIKA, headers=cpo).status_code == 403


def test_the_default_billing_country_must_be_a_country() -> None:
    with pytest.raises(ValueError, match="wallet_default_billing_country: 'XX' is not"):
        WalletSettings(wallet_default_billing_country="XX")
    assert WalletSettings(wallet_default_billing_country="FR").wallet_default_billing_country


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def test_the_account_page_form_sets_the_billing_details(env: World) -> None:
    driver = env.driver()
    signed = env.wallet.post(
        "/app/signin",
        data={"email": driver.email, "password": "correct horse battery", "next": "/app/account"},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    page = env.wallet.get("/app/account")
    assert page.status_code == 200
    html = page.text
    assert 'aria-current="page">Account</a>' in html
    for field, label in (
        ("billing-name", "Name on invoices"),
        ("billing-street", "Street and number"),
        ("billing-postcode", "Postcode"),
        ("billing-city", "City"),
        ("billing-country", "Country"),
    ):
        assert f'<label for="{field}">{label}' in html, field
    assert "your invoices name Germany (DE) as your country" in html
    assert '<option value="DE" selected>Germany (DE)</option>' in html

    # A country that is not one: the page says why, next to the field, and keeps what was typed.
    form = {**ERIKA, "country": "XX", "csrf": _csrf(html)}
    refused = env.wallet.post("/app/account/billing", data=form, follow_redirects=False)
    assert refused.status_code == 422
    assert re.search(r'role="alert">country: &#39;XX&#39; is not an ISO 3166-1', refused.text)
    assert re.search(r'id="billing-country"[^>]*aria-invalid="true"', refused.text)
    assert 'value="Heidestraße 17"' in refused.text
    # Without the form's CSRF token nothing changes.
    forged = env.wallet.post("/app/account/billing", data=ERIKA, follow_redirects=False)
    assert forged.status_code == 403

    saved = env.wallet.post(
        "/app/account/billing", data={**ERIKA, "csrf": _csrf(html)}, follow_redirects=False
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == "/app/account?notice=billing-saved"
    shown = env.wallet.get(saved.headers["location"]).text
    assert 'role="status">Billing details saved' in shown
    assert 'value="Erika Mustermann"' in shown and 'value="51147"' in shown
    assert env.wallet.get(BILLING, headers=driver.headers).json() == {**ERIKA, "default": False}
    env.wallet.cookies.clear()


@pytest.fixture(scope="module")
def station(env: World) -> str:
    station_id = env.station()
    env.charge_point_online(station_id)
    return station_id


def _request(env: World, driver: Driver, station: str, key: str) -> SessionRequested:
    assert env.top_up(driver, 10 * EUR).status_code == 201
    answer = env.wallet.post(
        "/v1/sessions",
        json={"station_id": station, "connector_id": "1", "max_amount": 5 * EUR},
        headers={**driver.headers, "Idempotency-Key": key},
    )
    assert answer.status_code == 201, answer.text
    session_id = answer.json()["session_id"]
    relay = env.wallet.app.state.relay  # type: ignore[attr-defined]
    wait_for("outbox relayed", lambda: relay.pending() == 0)
    [event] = [e for e in env.session_events(".requested.v1") if e.subject == session_id]
    payload: SessionRequested = event.payload(SessionRequested)
    return payload


@pytest.mark.postgres
def test_billing_details_travel_with_the_request_to_the_invoice(
    env: World, station: str, postgres_database: str
) -> None:
    erika, anon = env.driver(), env.driver()
    assert env.wallet.put(BILLING, json=ERIKA, headers=erika.headers).status_code == 200
    requests = {
        erika.driver_id: _request(env, erika, station, "bill-erika"),
        anon.driver_id: _request(env, anon, station, "bill-anon"),
    }
    billing = requests[erika.driver_id].billing
    assert billing is not None and billing.model_dump() == ERIKA
    default = requests[anon.driver_id].billing
    assert default is not None and default.model_dump(exclude_none=True) == {"country": "DE"}
    # A later change does not rewrite the buyer of a session already requested.
    env.wallet.put(BILLING, json={**ERIKA, "city": "Bonn"}, headers=erika.headers)

    # Invoicing, on PostgreSQL, reads the very events the wallet published, then the settlement.
    db = Database(postgres_database)
    try:
        migrate_invoicing(db)
        consumer = SessionsConsumer(
            db, {CPO_ID: supplier("Test CPO GmbH", "DE123456789")}, "https://m.example/{session_id}"
        )
        for envelope in env.session_events(".requested.v1"):
            consumer(envelope)
        for driver_id, request in requests.items():
            settled = settled_event(request.session_id, cpo_id=CPO_ID, driver_id=driver_id)
            consumer(envelope_of(settled))
        with db.session() as session:
            documents = {
                i.driver_id: load_document(i)
                for i in session.scalars(sa.select(Invoice)).all()
                if i.driver_id in requests
            }
    finally:
        db.dispose()
    assert documents[erika.driver_id].customer.model_dump(exclude_none=True) == ERIKA
    anon_buyer = documents[anon.driver_id].customer.model_dump(exclude_none=True)
    assert anon_buyer == {"name": f"chargenet driver {anon.driver_id}", "country": "DE"}
    xml = cii_xml(documents[erika.driver_id])
    assert b"<ram:LineOne>Heidestra\xc3\x9fe 17</ram:LineOne>" in xml
    assert b"<ram:CountryID>DE</ram:CountryID>" in xml
