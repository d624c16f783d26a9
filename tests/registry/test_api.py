"""The REST API end to end on the real Hardhat node: a CPO registers a station through the
signer, the indexer picks it up, drivers find it; live status from charge point events; and bad
input, each refused with a 4xx and a reason, with nothing written."""

from __future__ import annotations

import copy
import html
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from eth_account import Account
from eth_utils.crypto import keccak
from fastapi.testclient import TestClient

from chargenet.core.auth import Role, issue_token
from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.chain import load_artifact
from chargenet.core.db import Database
from chargenet.core.envelope import make_envelope
from chargenet.core.errors import Conflict, Unprocessable
from chargenet.core.events import ChargePointDisconnected, ConnectorStatusChanged
from chargenet.core.http import MAX_REQUEST_BODY_BYTES
from chargenet.core.pricing import canonical_hash
from chargenet.core.signer_client import SignerClient
from chargenet.registry.main import create_app
from chargenet.registry.models import Document, Location
from chargenet.registry.settings import RegistrySettings
from chargenet.signer.settings import DEVELOPMENT_MNEMONIC
from tests.registry.conftest import Chain, indexer_for
from tests.registry.harness import TARIFF, served
from tests.signer.harness import inprocess_signer

pytestmark = pytest.mark.hardhat
SECRET = "registry-test-secret-0123456789-abcdef"
SIGNER_TOKEN = "registry-signer-token-0123456789"
CPO = issue_token("cpo-1", Role.CPO, SECRET)
DRIVER = issue_token("driver-1", Role.DRIVER, SECRET)
METER = "0x" + keccak(b"meter key").hex()

Account.enable_unaudited_hdwallet_features()


def location(station: str = "DE*API*E0001", lat: str = "52.520008", **extra: Any) -> dict[str, Any]:
    return {
        "id": station,
        "name": "Alexanderplatz",
        "address": "Alexanderplatz 1",
        "city": "Berlin",
        "country": "DEU",
        "coordinates": {"latitude": lat, "longitude": "13.404954"},
        "time_zone": "Europe/Berlin",
        "charge_point_id": "CP-API-1",
        "evses": [
            {
                "uid": "E1",
                "evse_id": "DE*API*E0001*1",
                "status": "AVAILABLE",
                "connectors": [
                    {
                        "id": "1",
                        "standard": "IEC_62196_T2",
                        "format": "SOCKET",
                        "power_type": "AC_3_PHASE",
                        "max_voltage": 230,
                        "max_amperage": 32,
                    },
                    {
                        "id": "2",
                        "standard": "IEC_62196_T2_COMBO",
                        "format": "CABLE",
                        "power_type": "DC",
                        "max_voltage": 920,
                        "max_amperage": 163,
                        "max_electric_power": 150_000,
                    },
                ],
            }
        ],
        **extra,
    }


@pytest.fixture
def api(chain: Chain, db: Database, tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    cpo_key = Account.from_mnemonic(DEVELOPMENT_MNEMONIC, account_path="m/44'/60'/0'/0/5")
    env = {
        "CHARGENET_DATABASE_URL": f"sqlite:///{tmp_path}/signer.db",
        "CHARGENET_CHAIN_RPC_URL": chain.url,
        "CHARGENET_SIGNER_LISTEN": "127.0.0.1:0",
        "CHARGENET_SIGNER_KEYS": f"cpo1=0x{bytes(cpo_key.key).hex()}",
        "CHARGENET_SIGNER_CALLERS": json.dumps(
            {
                "registry": {
                    "token": SIGNER_TOKEN,
                    "keys": ["cpo1"],
                    "functions": ["StationRegistry.*"],
                }
            }
        ),
        "CHARGENET_SIGNER_CONTRACTS": json.dumps(
            {
                "StationRegistry": {
                    "address": chain.deployment.registry.address,
                    "abi": load_artifact("StationRegistry").abi,
                }
            }
        ),
        "CHARGENET_SIGNER_CONFIRMATIONS": "1",
        "CHARGENET_SIGNER_POLL_SECONDS": "0.1",
    }
    settings = RegistrySettings(
        registry_address=chain.deployment.registry.address,
        registry_jwt_secret=SECRET,
        registry_cpo_keys=json.dumps({"cpo-1": "cpo1"}),
    )
    indexer = indexer_for(db, chain)
    with (
        inprocess_signer(env) as signer,
        SignerClient(signer.url, SIGNER_TOKEN) as client,
    ):
        app = create_app(settings, InMemoryBus(), db, signer=client)
        with TestClient(app) as http:
            yield http, (indexer, client, db, cpo_key.address)


def _register(http: TestClient, station: str = "DE*API*E0001", **changes: Any) -> Any:
    body = {
        "station_id": station,
        "location": location(station),
        "tariff": TARIFF,
        "meter_key_hash": METER,
        **changes,
    }
    return http.post(
        "/v1/cpo/stations",
        content=json.dumps(body),
        headers={"authorization": f"Bearer {CPO}"},
    )


def _counts(db: Database) -> tuple[int, int]:
    with db.session() as session:
        return (
            session.scalar(sa.select(sa.func.count()).select_from(Document)) or 0,
            session.scalar(sa.select(sa.func.count()).select_from(Location)) or 0,
        )


def test_register_index_find_and_live_status(api: tuple[TestClient, Any]) -> None:
    http, (indexer, signer, _db, cpo_address) = api
    answer = _register(http)
    assert answer.status_code == 202, answer.text
    signer.wait([answer.json()["idempotency_key"]])
    indexer.catch_up()

    station = http.get("/v1/stations/DE*API*E0001").json()
    assert station["cpo_address"] == cpo_address
    assert (station["latitude_e6"], station["max_power_w"], station["connector_count"]) == (
        52_520_008,
        150_000,
        2,
    )
    assert station["tariff_hash"] == "0x" + canonical_hash(_decimal(TARIFF)).hex()
    assert station["tariff"]["id"] == "TARIFF-AC-1"
    assert station["location"]["matches_chain"] is True

    near = http.get("/v1/stations", params={"lat": 52.52, "lon": 13.40, "radius_km": 5}).json()
    assert [s["station_id"] for s in near["stations"]] == ["DE*API*E0001"]
    assert near["stations"][0]["distance_km"] < 1
    far = http.get("/v1/stations", params={"lat": 48.137, "lon": 11.575, "radius_km": 50})
    assert far.json()["total"] == 0
    chademo = http.get("/v1/stations", params={"connector_type": "CHADEMO"}).json()
    assert chademo["total"] == 0
    assert http.get("/v1/stations", params={"available_now": True}).json()["total"] == 0

    # Live status: connector 2 reports Available, then the charge point drops off.
    now = datetime.now(UTC)
    status = make_envelope(
        ConnectorStatusChanged(
            charge_point_id="CP-API-1",
            cpo_id="cpo-1",
            connector_id=2,
            status="Available",
            reported_at=now,
        ),
        subject="CP-API-1",
        source="gateway",
    )
    consumer = http.app.state.consumer  # type: ignore[attr-defined]
    consumer(status)
    consumer(status)  # a redelivery changes nothing
    available = http.get("/v1/stations", params={"available_now": True}).json()
    assert available["total"] == 1
    detail = http.get("/v1/stations/DE*API*E0001").json()["location"]
    connectors = {c["id"]: c for c in detail["evses"][0]["connectors"]}
    assert connectors["2"]["available"] is True and connectors["1"]["available"] is False
    consumer(
        make_envelope(
            ChargePointDisconnected(
                charge_point_id="CP-API-1", cpo_id="cpo-1", reason="socket closed"
            ),
            subject="CP-API-1",
            source="gateway",
        )
    )
    detail = http.get("/v1/stations/DE*API*E0001").json()["location"]
    assert detail["charge_points"][0]["online"] is False
    assert detail["charge_points"][0]["offline_reason"] == "socket closed"
    assert detail["charge_points"][0]["last_report_at"] is not None
    assert not any(c["available"] for c in detail["evses"][0]["connectors"])
    assert http.get("/v1/stations", params={"available_now": True}).json()["total"] == 0
    # A stale report (older than the disconnection) does not bring it back online.
    consumer(
        make_envelope(
            ConnectorStatusChanged(
                charge_point_id="CP-API-1",
                cpo_id="cpo-1",
                connector_id=1,
                status="Available",
                reported_at=now - timedelta(minutes=5),
            ),
            subject="CP-API-1",
            source="gateway",
        )
    )
    assert http.get("/v1/stations", params={"available_now": True}).json()["total"] == 0

    metrics = http.get("/metrics").text
    assert "chargenet_registry_api_latency_seconds_bucket" in metrics
    assert 'route="/v1/stations/{station_id}"' in metrics
    assert "chargenet_registry_indexed_block" in metrics
    assert "chargenet_registry_indexer_lag_blocks" in metrics


def test_status_events_fetched_together_apply_in_order_in_one_batch(
    api: tuple[TestClient, Any],
) -> None:
    """A start and a stop move a connector several times in a row: the bus hands them over
    together and they apply in one transaction, in order, once each, the stale one ignored."""
    http, (indexer, signer, _db, _cpo) = api
    answer = _register(http, "DE*API*E0009")  # the chain is shared by the module's tests
    assert answer.status_code == 202, answer.text
    signer.wait([answer.json()["idempotency_key"]])
    indexer.catch_up()
    now = datetime.now(UTC)

    def status(connector: int, value: str, seconds: float) -> Any:
        return make_envelope(
            ConnectorStatusChanged(
                charge_point_id="CP-API-1",
                cpo_id="cpo-1",
                connector_id=connector,
                status=value,
                reported_at=now + timedelta(seconds=seconds),
            ),
            subject="CP-API-1",
            source="gateway",
        )

    def duplicates() -> float:
        name = 'chargenet_registry_status_events_total{outcome="duplicate"} '
        found = [s for s in http.get("/metrics").text.splitlines() if s.startswith(name)]
        return float(found[0].removeprefix(name)) if found else 0.0

    before = duplicates()
    consumer = http.app.state.consumer  # type: ignore[attr-defined]
    first = [status(1, "Preparing", 1), status(1, "Charging", 2), status(2, "Available", 3)]
    consumer.batch(first)
    later = [
        first[1],  # redelivered: applied already
        status(1, "Finishing", 4),
        status(1, "Available", 5),
        status(2, "Charging", 0),  # older than connector 2's Available: ignored
    ]
    consumer.batch(later)

    detail = http.get("/v1/stations/DE*API*E0009").json()["location"]
    connectors = {c["id"]: c for c in detail["evses"][0]["connectors"]}
    assert connectors["1"]["available"] is True and connectors["2"]["available"] is True
    assert detail["charge_points"][0]["online"] is True
    assert duplicates() == before + 1


def _decimal(document: dict[str, Any]) -> dict[str, Any]:
    from decimal import Decimal

    parsed: dict[str, Any] = json.loads(json.dumps(document), parse_float=Decimal)
    return parsed


def test_bad_input_is_refused_with_a_reason_and_nothing_written(
    api: tuple[TestClient, Any],
) -> None:
    http, (indexer, signer, db, _address) = api
    auth = {"authorization": f"Bearer {CPO}"}
    before = _counts(db)

    out_of_range = _register(
        http, "DE*BAD*E0001", location=location("DE*BAD*E0001", lat="95.000000")
    )
    assert out_of_range.status_code == 422
    assert "out of range" in out_of_range.json()["detail"]

    unknown = location("DE*BAD*E0002")
    unknown["evses"][0]["connectors"][0]["standard"] = "IEC_62196_T9"
    answer = _register(http, "DE*BAD*E0002", location=unknown)
    assert answer.status_code == 422
    assert "evses.0.connectors.0.standard" in answer.json()["detail"]
    answer = http.get("/v1/stations", params={"connector_type": "IEC_62196_T9"})
    assert answer.status_code == 422 and "IEC_62196_T2" in answer.text

    for params in (
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"radius_km": 501, "lat": 1, "lon": 1},
    ):
        answer = http.get("/v1/stations", params=params)
        assert answer.status_code == 422, params
    assert http.get("/v1/stations", params={"lat": 91, "lon": 0}).status_code == 422
    assert (
        http.get("/v1/stations", params={"lat": 52}).json()["detail"] == "lat and lon go together"
    )

    assert _register(http, "DE*BAD*E0003", meter_key_hash="0x12").status_code == 422
    assert _register(http, "no spaces allowed").status_code == 422
    assert _counts(db) == before  # nothing of the refused requests was kept

    # Documents for a station on chain: a tariff whose keccak hash is not the chain's.
    answer = _register(http, "DE*API*E0002", location=location("DE*API*E0002"))
    assert answer.status_code == 202, answer.text
    signer.wait([answer.json()["idempotency_key"]])
    indexer.catch_up()
    before = _counts(db)
    changed = copy.deepcopy(TARIFF)
    changed["elements"][0]["price_components"][0]["price"] = 0.99
    answer = http.put(
        "/v1/cpo/stations/DE*API*E0002/tariff", content=json.dumps(changed), headers=auth
    )
    assert answer.status_code == 422
    assert "keccak hash" in answer.json()["detail"]
    moved = location("DE*API*E0002", lat="52.520009")
    answer = http.put(
        "/v1/cpo/stations/DE*API*E0002/location", content=json.dumps(moved), headers=auth
    )
    assert answer.status_code == 422 and "coordinates" in answer.json()["detail"]
    assert _counts(db) == before
    # The same tariff as on chain is accepted (an idempotent re-upload).
    answer = http.put(
        "/v1/cpo/stations/DE*API*E0002/tariff", content=json.dumps(TARIFF), headers=auth
    )
    assert answer.status_code == 204

    # Authentication: none, a driver's token, a station registered twice.
    assert _register(http, "DE*API*E0003").status_code == 202
    assert http.post("/v1/cpo/stations", content="{}").status_code == 401
    driver = http.delete(
        "/v1/cpo/stations/DE*API*E0002", headers={"authorization": f"Bearer {DRIVER}"}
    )
    assert driver.status_code == 403
    assert _register(http, "DE*API*E0002").status_code == 409


def test_a_time_zone_zoneinfo_does_not_know_is_refused_with_a_reason(
    api: tuple[TestClient, Any], chain: Chain
) -> None:
    """The wallet prices and projects a station's sessions in its time zone (ZoneInfo): one it
    cannot load failed each of them (500s, dead-lettered events) after a 202 here."""
    http, (indexer, signer, db, cpo_address) = api
    before, nonce = _counts(db), chain.w3.eth.get_transaction_count(cpo_address)
    for zone in ("Mars/Olympus", "../../etc/passwd", "localtime", ""):
        answer = _register(http, "DE*TZ*E0001", location=location("DE*TZ*E0001", time_zone=zone))
        assert answer.status_code == 422, (zone, answer.text)
        assert answer.json()["detail"].startswith("location: time_zone: "), answer.text
        assert "not an IANA time zone" in answer.json()["detail"]
    assert _counts(db) == before
    assert chain.w3.eth.get_transaction_count(cpo_address) == nonce  # nothing sent

    answer = _register(http, "DE*TZ*E0001", location=location("DE*TZ*E0001", time_zone="UTC"))
    assert answer.status_code == 202, answer.text
    signer.wait([answer.json()["idempotency_key"]])
    indexer.catch_up()
    assert http.get("/v1/stations/DE*TZ*E0001").json()["location"]["document"]["time_zone"] == (
        "UTC"
    )


def test_a_body_above_the_limit_is_refused_unread_and_nothing_is_kept(
    api: tuple[TestClient, Any], chain: Chain
) -> None:
    """The location and tariff models keep fields they do not know, and every variant of a
    document is a row: with no limit on a request body, a CPO's client could make the registry
    read and keep any amount."""
    http, (_indexer, _signer, db, cpo_address) = api
    before, nonce = _counts(db), chain.w3.eth.get_transaction_count(cpo_address)
    station = "DE*BIG*E0001"
    huge = location(station) | {"padding": "x" * MAX_REQUEST_BODY_BYTES}
    answer = _register(http, station, location=huge)
    assert answer.status_code == 413, answer.text
    assert _counts(db) == before
    assert chain.w3.eth.get_transaction_count(cpo_address) == nonce  # nothing sent
    assert _register(http, station).status_code == 202


def test_numbers_the_index_or_the_chain_cannot_hold_are_refused_before_sending(
    api: tuple[TestClient, Any], chain: Chain
) -> None:
    """OCPP ids go to int4 columns and the power to the contract's uint32: beyond them the
    transaction was sent and storing the documents failed (500, the documents lost, each retry
    the same), or the signer could not encode the call (502)."""
    http, (indexer, signer, db, cpo_address) = api
    station = "DE*NUM*E0001"

    def changed(change: Any) -> dict[str, Any]:
        document = location(station)
        change(document["evses"][0], document["evses"][0]["connectors"])
        return document

    refused = {
        "evses.0.connectors.0.ocpp_connector_id": changed(
            lambda _e, c: c[0].update(ocpp_connector_id=2**31)
        ),
        "evses.0.ocpp_evse_id": changed(lambda e, _c: e.update(ocpp_evse_id=2**31)),
        "evses.0.connectors.1.max_electric_power": changed(
            lambda _e, c: c[1].update(max_electric_power=2**32)
        ),
        "not an OCPP connector number": changed(lambda _e, c: c[0].update(id=str(2**31))),
        "above the chain's 4294967295 W": changed(
            lambda _e, c: c[0].update(max_voltage=1_000_000, max_amperage=10_000)
        ),
    }
    before, nonce = _counts(db), chain.w3.eth.get_transaction_count(cpo_address)
    for reason, document in refused.items():
        answer = _register(http, station, location=document)
        assert answer.status_code == 422, (reason, answer.text)
        assert reason in answer.json()["detail"], answer.text
    assert _counts(db) == before
    assert chain.w3.eth.get_transaction_count(cpo_address) == nonce  # nothing sent

    # The bounds themselves fit the index and the chain.
    largest = changed(
        lambda e, c: (
            e.update(ocpp_evse_id=2**31 - 1),
            c[0].update(ocpp_connector_id=2**31 - 1),
            c[1].update(max_electric_power=2**32 - 1),
        )
    )
    answer = _register(http, station, location=largest)
    assert answer.status_code == 202, answer.text
    signer.wait([answer.json()["idempotency_key"]])
    indexer.catch_up()
    assert http.get(f"/v1/stations/{station}").json()["max_power_w"] == 2**32 - 1


def test_a_corrected_registration_goes_through_after_a_refused_one(
    api: tuple[TestClient, Any],
) -> None:
    """The signer keeps a refused call under its key; keyed by the station alone, the corrected
    request then met that key and got a 502 "signer unavailable", for good."""
    http, (indexer, signer, _db, _address) = api
    station = "DE*FIX*E0001"
    refused = _register(http, station, operators=["0x" + "00" * 20])
    assert refused.status_code == 422 and "ZeroAddress" in refused.json()["detail"], refused.text
    again = _register(http, station, operators=["0x" + "00" * 20])
    assert again.status_code == 422  # the same request, the same answer

    corrected = _register(http, station)
    assert corrected.status_code == 202, corrected.text
    retry = _register(http, station)
    assert retry.json()["tx_hash"] == corrected.json()["tx_hash"]  # still one transaction
    signer.wait([corrected.json()["idempotency_key"]])
    indexer.catch_up()
    assert http.get(f"/v1/stations/{station}").json()["active"] is True

    # A different call under a key already used is a conflict to report, not the signer down.
    writer = http.app.state.writer  # type: ignore[attr-defined]
    key = "registry:register:DE*FIX*E0002:conflict"
    raw_id = "0x" + b"DE*FIX*E0002".ljust(32, b"\0").hex()
    info = corrected.json()["station_info"]
    with pytest.raises(Unprocessable):
        writer.send(key, "cpo-1", "register", [raw_id, info, ["0x" + "00" * 20]])
    with pytest.raises(Conflict) as conflict:
        writer.send(key, "cpo-1", "register", [raw_id, info, []])
    assert conflict.value.status_code == 409 and key in conflict.value.detail


def test_cpo_updates_and_retires_through_the_signer(api: tuple[TestClient, Any]) -> None:
    http, (indexer, signer, _db, _address) = api
    auth = {"authorization": f"Bearer {CPO}"}
    answer = _register(http, "DE*API*E0010", location=location("DE*API*E0010"))
    assert answer.status_code == 202, answer.text
    signer.wait([answer.json()["idempotency_key"]])
    indexer.catch_up()

    slower = location("DE*API*E0010")
    slower["evses"][0]["connectors"][1]["max_electric_power"] = 50_000
    body = {"location": slower, "tariff": TARIFF, "meter_key_hash": METER}
    answer = http.put("/v1/cpo/stations/DE*API*E0010", content=json.dumps(body), headers=auth)
    assert answer.status_code == 202, answer.text
    again = http.put("/v1/cpo/stations/DE*API*E0010", content=json.dumps(body), headers=auth)
    assert again.json()["tx_hash"] == answer.json()["tx_hash"]  # a retry is the same transaction
    signer.wait([answer.json()["idempotency_key"]])
    indexer.catch_up()
    assert http.get("/v1/stations/DE*API*E0010").json()["max_power_w"] == 50_000

    answer = http.delete("/v1/cpo/stations/DE*API*E0010", headers=auth)
    assert answer.status_code == 202, answer.text
    signer.wait([answer.json()["idempotency_key"]])
    indexer.catch_up()
    assert http.get("/v1/stations/DE*API*E0010").json()["active"] is False
    listed = http.get("/v1/stations", params={"limit": 100}).json()["stations"]
    assert "DE*API*E0010" not in {s["station_id"] for s in listed}
    assert http.delete("/v1/cpo/stations/DE*API*E0010", headers=auth).status_code == 409


# A station id is any printable ASCII: '/', '#', '?' and '%' are as legal as '*'.
ODD = "FR*ABC/1#2"
ENDS_LIKE_A_ROUTE = "FR*ABC/1#2/tariff"  # PUT to it is its update, not ODD's tariff
QUERY_AND_PERCENT = "FR*ABC?%41"  # unquoted: station FR*ABC, query "%41"


def _cpo_path(station: str, rest: str = "") -> str:
    return f"/v1/cpo/stations/{quote(station, safe='')}{rest}"


def _detail(http: httpx.Client, station: str) -> dict[str, Any]:
    answer = http.get(f"/v1/stations/{quote(station, safe='')}")
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()
    return detail


def test_cpo_routes_take_a_station_id_holding_url_delimiters(
    api: tuple[TestClient, Any],
) -> None:
    """Over real HTTP, as in production, where the server decodes %2F before routing: each CPO
    route reaches the station the encoded id names, even one whose id ends like a sub-route."""
    http, (indexer, signer, _db, _address) = api
    stations = (ODD, ENDS_LIKE_A_ROUTE, QUERY_AND_PERCENT)
    keys = [_register(http, s, location=location(s)).json()["idempotency_key"] for s in stations]
    signer.wait(keys)
    indexer.catch_up()
    auth = {"authorization": f"Bearer {CPO}"}
    with served(http.app) as url, httpx.Client(base_url=url, headers=auth) as cpo:
        assert [_detail(cpo, s)["station_id"] for s in stations] == list(stations)
        tariff = cpo.put(_cpo_path(ODD, "/tariff"), content=json.dumps(TARIFF))
        assert tariff.status_code == 204, tariff.text
        moved = cpo.put(_cpo_path(ODD, "/location"), content=json.dumps(location(ODD)))
        assert moved.status_code == 204, moved.text

        slower = location(ENDS_LIKE_A_ROUTE)
        slower["evses"][0]["connectors"][1]["max_electric_power"] = 50_000
        body = {"location": slower, "tariff": TARIFF, "meter_key_hash": METER}
        updated = cpo.put(_cpo_path(ENDS_LIKE_A_ROUTE), content=json.dumps(body))
        assert updated.status_code == 202, updated.text
        retired = cpo.delete(_cpo_path(QUERY_AND_PERCENT))
        assert retired.status_code == 202, retired.text
        assert [updated.json()["station_id"], retired.json()["station_id"]] == [
            ENDS_LIKE_A_ROUTE,
            QUERY_AND_PERCENT,
        ]
        signer.wait([updated.json()["idempotency_key"], retired.json()["idempotency_key"]])
        indexer.catch_up()
        assert _detail(cpo, ENDS_LIKE_A_ROUTE)["max_power_w"] == 50_000
        assert _detail(cpo, QUERY_AND_PERCENT)["active"] is False
        odd = _detail(cpo, ODD)
        assert (odd["max_power_w"], odd["active"]) == (150_000, True)


def test_a_station_path_none_of_the_routes_takes_is_refused_with_a_reason(
    api: tuple[TestClient, Any],
) -> None:
    """An id whose '/' was sent unencoded names no station route; an id that is none at all is
    refused on each CPO route alike."""
    http, _ = api
    auth = {"authorization": f"Bearer {CPO}"}
    with served(http.app) as url, httpx.Client(base_url=url, headers=auth) as cpo:
        for method, path in (
            ("GET", "/v1/stations/FR*ABC/1%232"),
            ("PUT", "/v1/cpo/stations/FR*ABC/1%232/tariff"),
            ("DELETE", "/v1/cpo/stations/FR*ABC/1%232"),
        ):
            answer = cpo.request(method, path, content=json.dumps(TARIFF))
            assert answer.status_code == 404, (method, path, answer.text)
            assert "a station id is one path segment" in answer.json()["detail"]
        spaced = quote("no spaces allowed", safe="")
        for rest in ("/tariff", "/location"):
            answer = cpo.put(f"/v1/cpo/stations/{spaced}{rest}", content=json.dumps(TARIFF))
            assert answer.status_code == 422, (rest, answer.text)
            assert "printable ASCII characters without spaces" in answer.json()["detail"]


def test_console_pages_take_a_station_id_holding_url_delimiters(
    api: tuple[TestClient, Any],
) -> None:
    """The console links to a station's form with its id as one encoded segment, and the form
    updates that station."""
    http, (indexer, signer, _db, _address) = api
    station = "FR*CON/1#2?%41"
    answer = _register(http, station, location=location(station))
    assert answer.status_code == 202, answer.text
    signer.wait([answer.json()["idempotency_key"]])
    indexer.catch_up()
    segment = quote(station, safe="")
    with served(http.app) as url, httpx.Client(base_url=url) as browser:
        assert browser.post("/console/signin", data={"token": CPO}).status_code == 303
        edit = f"/console/stations/{segment}/edit"
        assert f'href="{edit}"' in browser.get("/console/").text
        page = browser.get(edit)
        assert page.status_code == 200, page.text
        assert f'action="/console/stations/{segment}"' in page.text
        inputs = re.findall(r'name="(\w+)" value="([^"]*)"', page.text)
        fields = {name: html.unescape(value) for name, value in inputs}
        assert fields["station_id"] == station
        sent = browser.post(f"/console/stations/{segment}", data={**fields, "power_kw": "11"})
        assert sent.status_code == 303, sent.text
        assert sent.headers["location"] == "/console/?notice=submitted"

        cut = browser.get("/console/stations/FR*CON/1%232%3F%2541/edit")
        assert cut.status_code == 404 and "a station id is one path segment" in cut.text

    def updated() -> bool:
        indexer.catch_up()
        return bool(_detail(http, station)["max_power_w"] == 11_000)

    deadline = time.monotonic() + 30
    while not updated():
        assert time.monotonic() < deadline, "the console's update was not indexed"
        time.sleep(0.2)


def test_the_console_overview_lists_a_station_whose_documents_this_registry_lacks(
    api: tuple[TestClient, Any],
) -> None:
    """A station on chain whose location this registry never stored (registered on chain
    directly, or its documents lost): the overview answered 500 for its CPO, whose stations all
    went unlisted."""
    http, (indexer, signer, db, _address) = api
    station = "DE*DOC*E0001"
    answer = _register(http, station, location=location(station))
    assert answer.status_code == 202, answer.text
    signer.wait([answer.json()["idempotency_key"]])
    with db.session() as session:
        session.execute(sa.delete(Location).where(Location.station_id == station))
    indexer.catch_up()
    signed = http.post("/console/signin", data={"token": CPO}, follow_redirects=False)
    assert signed.status_code == 303
    page = http.get("/console/")
    assert page.status_code == 200, page.text
    assert f'<tr data-station="{station}">' in page.text
