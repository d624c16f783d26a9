"""Client input the wallet's API must refuse with a 4xx and a reason (never a 500, never kept or
sent on): found by an audit of its routes on PostgreSQL, which can neither store nor compare a
NUL in text and binds no integer beyond a signed 64-bit one."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from chargenet.registry.documents import CheckedTariff, document_hash
from chargenet.wallet.auth import TokenAuthority
from chargenet.wallet.models import ChargingSession, Payout, TopUp
from chargenet.wallet.models import Driver as DriverRow
from chargenet.wallet.settings import Issuer
from chargenet.wallet.web.cookies import COOKIE
from tests.conftest import fresh_postgres_database
from tests.wallet.harness import EUR, TARIFF, Driver, World, world


@pytest.fixture(scope="module")
def env(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The wallet on a fresh PostgreSQL database, shared by this module's tests."""
    with (
        fresh_postgres_database(postgres_url) as url,
        world(tmp_path_factory.mktemp("wallet"), wallet_database_url=url) as running,
    ):
        assert running.wallet_db.is_postgres
        yield running


def refused(answer: Any, status: int = 422) -> str:
    """The reason of a refusal in the services' one error shape."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) >= {"error", "detail"} and isinstance(body["detail"], str), body
    return str(body["detail"])


def count(env: World, table: Any, *where: Any) -> int:
    with env.wallet_db.session() as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(table).where(*where)) or 0)


@pytest.mark.parametrize("email", ["dri\0ver@example.org", "driver@exam\0ple.org", "a@b.d\x01e"])
def test_an_account_email_with_a_control_character_is_refused(env: World, email: str) -> None:
    """A NUL reached the e-mail column: PostgreSQL cannot store it (500)."""
    body = {"email": email, "password": "correct horse battery"}
    assert refused(env.wallet.post("/v1/accounts", json=body)).startswith("email: ")


def test_a_login_name_with_a_nul_is_a_wrong_e_mail_address(env: World) -> None:
    """The sign-in compared it with the e-mail column: PostgreSQL cannot (500)."""
    answer = env.login("dri\0ver@example.org", "correct horse battery")
    assert refused(answer, 401) == "wrong e-mail address or password"


def test_a_top_up_reference_holding_a_nul_is_not_found(env: World) -> None:
    """The lookup compared it with the reference column: PostgreSQL cannot (500)."""
    driver = env.driver()
    for reference in ("pay%00", "%00", "pay-1%00x"):
        answer = env.wallet.get(f"/v1/wallet/topups/{reference}", headers=driver.headers)
        assert refused(answer, 404).startswith("no top-up "), reference


@pytest.fixture(scope="module")
def funded(env: World) -> Driver:
    """A driver with 20 EUR in the escrow deposit."""
    driver = env.driver()
    assert env.top_up(driver, 20 * EUR).status_code == 201
    return driver


def test_a_top_up_reference_with_a_trailing_newline_is_refused_before_the_payment(
    env: World, funded: Driver
) -> None:
    """``$`` matched before a final newline: the payment was captured, then the signer refused
    the reference in its idempotency key (503, on every repeat): paid, nothing minted."""
    for reference in ("pay-newline\n", "pay-newline\r\n"):
        body = {"payment_reference": reference, "amount": EUR}
        answer = env.wallet.post("/v1/wallet/topups", json=body, headers=funded.headers)
        assert refused(answer).startswith("payment_reference: "), reference
        assert reference not in env.payments.captured
        assert count(env, TopUp, TopUp.payment_reference == reference) == 0


def test_a_payout_reference_with_a_trailing_newline_is_refused_before_anything_is_kept(
    env: World, funded: Driver
) -> None:
    """The payout was stored, then the signer refused the reference (503 on every repeat)."""
    before = env.deposit(funded.address)
    body = {"payout_reference": "payout-newline\n", "amount": EUR}
    answer = env.wallet.post("/v1/wallet/payouts", json=body, headers=funded.headers)
    assert refused(answer).startswith("payout_reference: ")
    assert count(env, Payout, Payout.driver_id == funded.driver_id) == 0
    assert env.deposit(funded.address) == before and "payout-newline\n" not in env.payments.paid_out


def test_a_session_offset_beyond_a_signed_64_bit_integer_is_refused(env: World) -> None:
    """OFFSET is a signed 64-bit integer: from 2**63 on, PostgreSQL could not bind it (500)."""
    driver = env.driver()
    for offset in (2**63, 2**64, 10**30):
        answer = env.wallet.get("/v1/sessions", params={"offset": offset}, headers=driver.headers)
        assert refused(answer).startswith("query.offset: "), offset
    largest = env.wallet.get("/v1/sessions", params={"offset": 2**63 - 1}, headers=driver.headers)
    assert largest.status_code == 200 and largest.json()["sessions"] == [], largest.text


@pytest.mark.parametrize("session_id", ["\0", "a\0b", "00000000-0000-0000-0000-00000000000\0"])
def test_a_session_id_holding_a_nul_is_not_found(env: World, session_id: str) -> None:
    """Reading, stopping or streaming it compared it with the session column: PostgreSQL
    cannot (500), the driver pages' live stream alike."""
    driver = env.driver()
    path = f"/v1/sessions/{quote(session_id, safe='')}"
    stops = len(env.session_events(".stop_requested.v1"))
    assert refused(env.wallet.get(path, headers=driver.headers), 404) == f"no session {session_id}"
    assert refused(env.wallet.post(f"{path}/stop", headers=driver.headers), 404)
    assert refused(env.wallet.get(f"{path}/stream", headers=driver.headers), 404)
    assert len(env.session_events(".stop_requested.v1")) == stops
    env.wallet.cookies.set(COOKIE, driver.token)
    try:
        page = env.wallet.get(f"/app/sessions/{quote(session_id, safe='')}/stream")
    finally:
        env.wallet.cookies.clear()
    assert page.status_code == 404 and page.text == f"no session {session_id}", page.text


@pytest.fixture(scope="module")
def station(env: World) -> str:
    """A registered station whose charge point is online and available."""
    station_id = env.station()
    env.charge_point_online(station_id)
    return station_id


def request_session(env: World, driver: Driver, key: str, **body: Any) -> Any:
    return env.wallet.post(
        "/v1/sessions", json=body, headers={**driver.headers, "Idempotency-Key": key}
    )


def nothing_requested(env: World, driver: Driver) -> bool:
    """No session row of the driver, and no SessionRequested event for one."""
    rows = count(env, ChargingSession, ChargingSession.driver_id == driver.driver_id)
    events = env.session_events(".requested.v1")
    return rows == 0 and not [e for e in events if e.data["driver_id"] == driver.driver_id]


@pytest.mark.parametrize("kwh", ["\u0661", "\uff11\uff10", "\u0661.5", "1\u0660"])
def test_a_max_kwh_of_other_than_ascii_digits_is_refused(
    env: World, funded: Driver, station: str, kwh: str
) -> None:
    """Decimal() reads any script's digits: Arabic-Indic one ('\u0661') was taken as 1 kWh
    and a session for it requested (and sent to the escrow)."""
    answer = request_session(
        env, funded, f"kwh-{uuid.uuid4().hex}", station_id=station, connector_id="1", max_kwh=kwh
    )
    assert refused(answer).startswith("body.max_kwh: "), answer.text
    assert nothing_requested(env, funded)


def test_an_idempotency_key_with_a_trailing_newline_is_refused(
    env: World, funded: Driver, station: str
) -> None:
    """``$`` matched before a final newline: the key (which the driver pages pass on from a
    form field) was stored and published with it."""
    body = {"station_id": station, "connector_id": "1", "max_amount": EUR}
    answer = request_session(env, funded, "session-key\n", **body)
    assert refused(answer).startswith("Idempotency-Key: ")
    assert nothing_requested(env, funded)


@pytest.mark.parametrize(
    "station_id",
    [
        "DE*\u00c4*1",
        "DE*CNT*\uff11",
        "0x" + "zz" * 32,
        "0x" + "ab" * 31 + "\0\0",
        "0x" + "ab " * 21 + "a",
    ],
    ids=["umlaut", "fullwidth digit", "not hex", "nul", "spaces"],
)
def test_a_station_id_no_station_can_have_is_refused(
    env: World, funded: Driver, station_id: str
) -> None:
    """It went to the registry, which refuses it (422): the wallet answered 503, as if the
    registry were down."""
    body = {"station_id": station_id, "connector_id": "1", "max_amount": EUR}
    answer = request_session(env, funded, f"station-{uuid.uuid4().hex}", **body)
    assert refused(answer).startswith("station_id: "), answer.text
    assert nothing_requested(env, funded)


def _unchecked(document: dict[str, Any]) -> CheckedTariff:
    """The registry's tariff check as it was before the Tariff model got its limits."""
    return CheckedTariff(document=document, hash=document_hash(document), tariff_id=document["id"])


@pytest.mark.parametrize(
    ("tariff", "reason"),
    [
        ({**TARIFF, "elements": TARIFF["elements"] * 257}, "elements: "),
        (
            {
                **TARIFF,
                "elements": [
                    {"price_components": [{"type": "ENERGY", "price": "1e30", "step_size": 1}]}
                ],
            },
            "elements.0.price_components.0.price: ",
        ),
    ],
    ids=["257 elements", "price 1e30"],
)
def test_a_stored_tariff_the_model_no_longer_takes_refuses_the_session_with_a_reason(
    env: World, funded: Driver, monkeypatch: pytest.MonkeyPatch, tariff: Any, reason: str
) -> None:
    """A tariff registered before the Tariff model's limits fails validation when read back: a
    session for max_kwh answered 500, one for max_amount was sent on for the escrow to refuse."""
    with monkeypatch.context() as old_registry:
        old_registry.setattr("chargenet.registry.api.check_tariff", _unchecked)
        station_id = env.station(tariff=tariff)
    env.charge_point_online(station_id)
    detail = env.registry.get(f"/v1/stations/{quote(station_id, safe='')}")
    assert detail.status_code == 200 and detail.json()["tariff"]["id"] == tariff["id"]
    for maximum in ({"max_amount": EUR}, {"max_kwh": "5"}):
        body = {"station_id": station_id, "connector_id": "1", **maximum}
        answer = request_session(env, funded, f"legacy-{uuid.uuid4().hex}", **body)
        detail_text = refused(answer, 409)
        assert detail_text.startswith("the station's tariff is not valid: " + reason), detail_text
        assert "at most" in detail_text, detail_text
    assert nothing_requested(env, funded)


@pytest.fixture
def external_issuer(env: World) -> Iterator[Any]:
    """The wallet verifying an identity provider's RS256 tokens (accounts made on first use)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = env.settings.model_copy(
        update={
            "wallet_auth_issuer": Issuer.EXTERNAL,
            "wallet_jwt_public_key": SecretStr(public.decode()),
        }
    )
    state = env.wallet.app.state  # type: ignore[attr-defined]
    development = state.tokens
    state.tokens = TokenAuthority(settings)
    try:
        yield key
    finally:
        state.tokens = development


@pytest.mark.parametrize("subject", ["idp|\0", "idp|" + "4" * 197], ids=["nul", "too long"])
def test_a_token_subject_no_account_can_have_is_refused(
    env: World, external_issuer: Any, subject: str
) -> None:
    """The first request of an identity provider's driver looked the subject up and created
    the account under it: with a NUL PostgreSQL cannot compare it, longer than the driver id
    column (200) it cannot store it (500s)."""
    now = int(time.time())
    claims = {"sub": subject, "role": "driver", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, external_issuer, algorithm="RS256")
    answer = env.wallet.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert refused(answer, 401).startswith("invalid token: sub ")
    if "\0" not in subject:  # which PostgreSQL could not even look for
        assert count(env, DriverRow, DriverRow.driver_id == subject) == 0
    good = jwt.encode({**claims, "sub": "idp|" + "4" * 196}, external_issuer, algorithm="RS256")
    assert env.wallet.get("/v1/me", headers={"Authorization": f"Bearer {good}"}).status_code == 200


ALREADY_REFUSED = [
    ("post", "/v1/wallet/topups", {"payment_reference": "p-1", "amount": 2**63}, 422, "amount: "),
    ("post", "/v1/wallet/topups", {"payment_reference": "p-1", "amount": True}, 422, "body.amount"),
    ("post", "/v1/wallet/topups", {"payment_reference": "p-1", "amount": "5"}, 422, "body.amount"),
    ("post", "/v1/wallet/topups", {"payment_reference": "p-1", "amount": 5.0}, 422, "body.amount"),
    ("post", "/v1/wallet/topups", {"payment_reference": "p\0", "amount": 5}, 422, "payment_"),
    ("post", "/v1/wallet/topups", {"payment_reference": "p" * 10_000, "amount": 5}, 422, "body."),
    ("post", "/v1/wallet/payouts", {"payout_reference": "o-1", "amount": 2**64}, 422, "amount: "),
    ("post", "/v1/wallet/payouts", {"payout_reference": "o-1", "amount": -1}, 422, "body.amount"),
    ("get", "/v1/wallet/topups/" + "p" * 10_000, None, 404, "no top-up "),
    ("get", "/v1/wallet/history?limit=9223372036854775808", None, 422, "query.limit"),
    ("get", "/v1/wallet/history?limit=%D9%A1", None, 422, "query.limit"),
    ("get", "/v1/sessions?limit=%C2%B2", None, 422, "query.limit"),
    ("get", "/v1/sessions?offset=%EF%BC%91", None, 422, "query.offset"),
    ("get", "/v1/sessions/" + "s" * 10_000, None, 404, "no session "),
    ("put", "/v1/me/billing", {"country": "DE", "name": "A\0B"}, 422, "name: "),
    ("put", "/v1/me/billing", {"country": "DE", "city": "c" * 10_000}, 422, "body.city"),
    ("put", "/v1/me/billing", {"country": "DE", "postcode": "1" * 21}, 422, "postcode: "),
    ("put", "/v1/me/billing", {"country": "D\0"}, 422, "country: "),
    ("put", "/v1/me/billing", {"country": "XX"}, 422, "country: "),
    ("put", "/v1/me/billing", {"country": 49}, 422, "body.country"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "reason"), ALREADY_REFUSED)
def test_what_the_audit_found_refused_already(
    env: World, method: str, path: str, body: Any, status: int, reason: str
) -> None:
    """Amounts beyond a signed 64-bit integer or of the wrong type, references and billing
    fields with a NUL or beyond their columns, non-ASCII digits in a query: a 4xx with a
    reason, and nothing captured."""
    driver = env.driver()
    captured = set(env.payments.captured)
    answer = env.wallet.request(method, path, json=body, headers=driver.headers)
    assert refused(answer, status).startswith(reason), answer.text
    assert set(env.payments.captured) == captured
    assert count(env, Payout, Payout.driver_id == driver.driver_id) == 0
