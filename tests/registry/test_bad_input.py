"""Client input the registry's API must refuse with a 4xx and a reason (never a 500, never
accepted): found by an audit of its routes. No signer here: everything is checked before a
station change would go to it, so a request that gets past the checks answers 409."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from chargenet.core.auth import Role, issue_token
from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.db import Database
from chargenet.registry.main import create_app, migrate
from chargenet.registry.settings import RegistrySettings
from tests.registry.harness import TARIFF

SECRET = "registry-test-secret-0123456789-abcdef"
CPO = {"authorization": f"Bearer {issue_token('cpo-1', Role.CPO, SECRET)}"}
STATION = "DE*BAD*E0001"
METER = "0x" + "ab" * 32
ADDRESS = "0x" + "a1" * 20


def _client(db: Database) -> TestClient:
    settings = RegistrySettings(
        registry_address="0x" + "11" * 20,
        registry_jwt_secret=SECRET,
        registry_cpo_keys=json.dumps({"cpo-1": "cpo1"}),
    )
    return TestClient(create_app(settings, InMemoryBus(), db))


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    db = Database(f"sqlite:///{tmp_path}/registry.db")
    migrate(db)
    with _client(db) as client:
        yield client
    db.dispose()


@pytest.fixture
def postgres_http(postgres_database: str) -> Iterator[TestClient]:
    db = Database(postgres_database)
    migrate(db)
    with _client(db) as client:
        yield client
    db.dispose()


def location(**changes: Any) -> dict[str, Any]:
    connector = {
        "id": "1",
        "standard": "IEC_62196_T2",
        "format": "SOCKET",
        "power_type": "AC_3_PHASE",
        "max_voltage": 230,
        "max_amperage": 32,
    }
    return {
        "id": STATION,
        "name": "Bad input",
        "coordinates": {"latitude": "52.520008", "longitude": "13.404954"},
        "charge_point_id": "CP-BAD-1",
        "evses": [{"uid": "E1", "connectors": [connector]}],
        **changes,
    }


def register(http: TestClient, content: str | None = None, **changes: Any) -> Any:
    body = {
        "station_id": STATION,
        "location": location(),
        "tariff": TARIFF,
        "meter_key_hash": METER,
        **changes,
    }
    return http.post("/v1/cpo/stations", content=content or json.dumps(body), headers=CPO)


def test_the_checks_pass_a_good_registration_to_the_missing_signer(http: TestClient) -> None:
    answer = register(http)
    assert answer.status_code == 409 and "no signer" in answer.json()["detail"], answer.text


@pytest.mark.parametrize("power", [2**32, 2**63, 2**64])
def test_a_minimum_power_above_the_chains_uint32_is_refused(http: TestClient, power: int) -> None:
    """No station has more than the contract's uint32 watts; from 2**63 on the database could
    not bind the number (500)."""
    answer = http.get("/v1/stations", params={"min_power_w": power})
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["loc"] == ["query", "min_power_w"]
    assert http.get("/v1/stations", params={"min_power_w": 2**32 - 1}).status_code == 200


@pytest.mark.parametrize("path", ["/v1/stations/{}", "/v1/documents/{}"])
def test_an_id_no_station_or_document_can_have_is_refused_with_a_reason(
    postgres_http: TestClient, path: str
) -> None:
    """A NUL in the id: PostgreSQL cannot take it as text, and the lookup answered 500."""
    for bad in ("A\0B", "\0", "0x" + "ab" * 31 + "\0\0"):
        answer = postgres_http.get(path.format(quote(bad, safe="")))
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["error"] == "unprocessable"
    absent = postgres_http.get(path.format("DE*NONE*1" if "stations" in path else METER))
    assert absent.json()["error"] == "not_found"


def test_an_address_with_a_trailing_newline_is_refused(http: TestClient) -> None:
    """``$`` matches before a final newline: the search answered an empty page for it, and a
    registration took it as an operator and sent it to the signer."""
    search = http.get("/v1/stations", params={"cpo": ADDRESS + "\n"})
    assert search.status_code == 422 and "cpo" in search.json()["detail"], search.text
    answer = register(http, operators=[ADDRESS + "\n"])
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("operators: ")
    assert register(http, operators=[ADDRESS]).status_code == 409  # past the checks


def _with_extra(value: str) -> str:
    """A registration whose location carries one more member (kept, not read), as raw JSON."""
    body = json.dumps({"station_id": STATION, "location": location(note=0), "tariff": TARIFF})
    return body.replace('"note": 0', f'"note": {value}')[:-1] + f', "meter_key_hash": "{METER}"}}'


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        # json.loads recurses per level, and py_ecc (imported with web3) lets it go 100,000
        # deep: past the thread's stack, the process died (SIGSEGV).
        ("[" * 200_000 + "]" * 200_000, "nested deeper than"),
        ("NaN", "NaN is not a number"),
        ("-Infinity", "-Infinity is not a number"),
        ("1e999999999", "too long"),  # the canonical hash's plain notation overflowed: 500
        ("1e99999", "too long"),  # or was 100,000 digits, stored
        ("1" * 5000, "too long"),  # Python's limit on an int's digits: 500
    ],
    ids=["deep", "nan", "infinity", "huge exponent", "long plain notation", "long integer"],
)
def test_json_the_documents_cannot_hold_is_refused_with_a_reason(
    http: TestClient, value: str, reason: str
) -> None:
    answer = register(http, _with_extra(value))
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("request: ") and reason in answer.text
    assert register(http, _with_extra('[[{"a": 1.5e3}]]')).status_code == 409  # past the checks


def test_a_nul_character_is_refused_before_sending(http: TestClient) -> None:
    """A location's name (and EVSE uids, charge point ids) go to PostgreSQL text columns, which
    take no NUL: the transaction was sent, then storing the documents failed (500), lost."""
    text = "Alex\0anderplatz"
    for changes in ({"name": text}, {"charge_point_id": text}, {text: 1}):
        answer = register(http, location=location(**changes))
        assert answer.status_code == 422, (changes, answer.text)
        assert "NUL" in answer.json()["detail"], answer.text


@pytest.mark.parametrize("connector_id", ["\u00b2", "\u0661", "\uff11"])
def test_a_connector_id_of_other_than_ascii_digits_is_no_ocpp_number(
    http: TestClient, connector_id: str
) -> None:
    """str.isdigit() holds for '²' (int() refused it: 500) and for other scripts' digits (int()
    took Arabic-Indic one as connector 1)."""
    document = location()
    document["evses"][0]["connectors"][0]["id"] = connector_id
    answer = register(http, location=document)
    assert answer.status_code == 422, answer.text
    assert "not an OCPP connector number" in answer.json()["detail"]


def console_form(http: TestClient) -> dict[str, str]:
    """A CPO signed in to the console, and a new station's form with its CSRF token filled in."""
    assert http.post("/console/signin", data={"token": CPO["authorization"][7:]}).status_code
    page = http.get("/console/stations/new").text
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return {
        "csrf": csrf,
        "station_id": STATION,
        "name": "Bad input",
        "latitude": "52.520008",
        "longitude": "13.404954",
        "charge_point_id": "CP-BAD-1",
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [("power_kw", "1e5000"), ("power_kw", "1e999999999"), ("minute_price", "1e999999")],
)
def test_the_console_form_refuses_a_number_too_large_with_a_reason(
    http: TestClient, field: str, value: str
) -> None:
    """The form scaled it (kW to W, per minute to per hour) past the decimal context or
    Python's int digits: a 500 page."""
    form = {**console_form(http), field: value}
    answer = http.post("/console/stations", data=form, follow_redirects=False)
    assert answer.status_code == 422, answer.text
    assert "at most" in answer.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connectors", "\uff12"),  # full-width 2
        ("connectors", "\u0662"),  # Arabic-Indic 2
        ("latitude", "\uff15\uff12.5"),
        ("longitude", "1\u0663.4"),
        ("power_kw", "\u0662\u0662"),
        ("energy_price", "0.\u0663\u0669"),
        ("minute_price", "\uff10,\uff11"),
        ("session_fee", "\u09e7"),  # Bengali 1
        ("vat", "\uff11\uff19"),
    ],
)
def test_the_console_form_refuses_other_than_ascii_digits_with_a_reason(
    http: TestClient, field: str, value: str
) -> None:
    """int() and Decimal() read any script's digits: a full-width or Arabic-Indic number was
    taken as typed and the station sent on (past the checks: 409 with no signer)."""
    form = {**console_form(http), "meter_key_hash": METER}
    sent = http.post("/console/stations", data=form, follow_redirects=False)
    assert sent.status_code == 409, sent.text  # the same form, ASCII: past the checks
    answer = http.post("/console/stations", data={**form, field: value}, follow_redirects=False)
    assert answer.status_code == 422, answer.text
    assert "is not a number" in answer.text or "a whole number" in answer.text, answer.text


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {
                "tariff": {
                    **TARIFF,
                    "elements": [
                        {"price_components": [{"type": "ENERGY", "price": 1e30, "step_size": 1}]}
                    ],
                }
            },
            "tariff: elements.0.price_components.0.price: ",
        ),
        (
            {"tariff": {**TARIFF, "max_price": {"excl_vat": "1e30"}}},
            "tariff: max_price.excl_vat: ",
        ),
        ({"tariff": {**TARIFF, "elements": TARIFF["elements"] * 2_000}}, "tariff: elements: "),
        (
            {
                "tariff": {
                    **TARIFF,
                    "elements": [
                        {"price_components": TARIFF["elements"][0]["price_components"] * 20_000}
                    ],
                }
            },
            "tariff: elements.0.price_components: ",
        ),
        ({"operators": [ADDRESS] * 20_000}, "operators: "),
    ],
    ids=["price 1e30", "max_price 1e30", "2,000 elements", "20,000 components", "operators"],
)
def test_a_tariff_or_registration_beyond_what_can_be_locked_or_sent_is_refused(
    http: TestClient, changes: dict[str, Any], reason: str
) -> None:
    """A price of 1e30 EUR/kWh could never be locked in the escrow's uint96 of base units, and
    20,000 elements or operators were taken (the registration past the checks: 409)."""
    answer = register(http, **changes)
    assert answer.status_code == 422, answer.text[:500]
    detail = answer.json()["detail"]
    assert detail.startswith(reason) and "at most" in detail, detail
    tariff = changes.get("tariff")
    if tariff is not None:
        put = http.put(
            f"/v1/cpo/stations/{quote(STATION, safe='')}/tariff", json=tariff, headers=CPO
        )
        assert put.status_code == 422 and put.json()["detail"].startswith(reason), put.text[:500]


def _evses(count: int, connectors: int = 1) -> list[dict[str, Any]]:
    connector = location()["evses"][0]["connectors"][0]
    return [
        {
            "uid": f"E{n}",
            "connectors": [{**connector, "id": str(c)} for c in range(1, connectors + 1)],
        }
        for n in range(1, count + 1)
    ]


@pytest.mark.parametrize(
    ("evses", "reason"),
    [(_evses(2_000), "location: evses: "), (_evses(1, 2_000), "location: evses.0.connectors: ")],
    ids=["2,000 EVSEs", "2,000 connectors of an EVSE"],
)
def test_a_location_of_more_evses_or_connectors_than_a_station_has_is_refused(
    http: TestClient, evses: list[dict[str, Any]], reason: str
) -> None:
    """A location's EVSEs and an EVSE's connectors had no bound but the 1 MiB body: tens of
    thousands were validated one by one before the count on the chain's uint8 refused them,
    with a reason that named no field."""
    answer = register(http, location=location(evses=evses))
    assert answer.status_code == 422, answer.text[:500]
    detail = answer.json()["detail"]
    assert detail.startswith(reason) and "at most" in detail, detail
    put = http.put(
        f"/v1/cpo/stations/{quote(STATION, safe='')}/location",
        json=location(evses=evses),
        headers=CPO,
    )
    assert put.status_code == 422 and put.json()["detail"].startswith(reason), put.text[:500]
    # As many EVSEs as the chain counts connectors, and 16 connectors to an EVSE, pass.
    for largest in (_evses(255), _evses(1, 16)):
        assert register(http, location=location(evses=largest)).status_code == 409


def test_a_registration_naming_an_operator_twice_is_refused(http: TestClient) -> None:
    """StationRegistry.register allows each operator given: the same key twice (or in another
    letter case, the same address) was sent on and paid for twice."""
    other = "0x" + "b2" * 20
    for operators in ([ADDRESS, ADDRESS], [ADDRESS, other, ADDRESS.upper().replace("0X", "0x")]):
        answer = register(http, operators=operators)
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert detail.startswith("operators: ") and "twice" in detail, detail
    assert register(http, operators=[ADDRESS, other]).status_code == 409  # past the checks


@pytest.mark.parametrize(
    ("restrictions", "field"),
    [
        ({"max_kwh": "1e90"}, "max_kwh"),
        ({"min_power": 10**9}, "min_power"),
        ({"max_current": 20_000}, "max_current"),
        ({"min_duration": 10**12}, "min_duration"),
        ({"day_of_week": ["SUNDAY", "SUNDAY"]}, "day_of_week"),
    ],
)
def test_a_tariff_restriction_no_session_can_reach_is_refused(
    http: TestClient, restrictions: dict[str, Any], field: str
) -> None:
    """Restriction values were bounded by their digits only (1e90 kWh, a minimum duration of
    thirty thousand years), and a day listed twice was refused naming no field."""
    element = {**TARIFF["elements"][0], "restrictions": restrictions}
    answer = register(http, tariff={**TARIFF, "elements": [element]})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"tariff: elements.0.restrictions.{field}: "), detail
