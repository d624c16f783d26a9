"""Session requests: the checks (409 retired/offline, 422 above balance), idempotency, nonces, the
authorisation opening on chain, the live view, stop, the live stream, and ownership (403)."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from chargenet.core.chain import session_id as chain_session_id
from chargenet.core.errors import NotFound
from chargenet.core.events import (
    EscrowOpened,
    MeterReading,
    SessionRequested,
    SessionSettled,
    SessionStarted,
    SessionStopped,
    StopRequested,
)
from chargenet.core.pricing import canonical_hash
from chargenet.wallet.models import ChargingSession
from chargenet.wallet.models import Driver as WalletDriver
from chargenet.wallet.registry_client import RegistryClient, Station, chain_station_id
from chargenet.wallet.web.backend import Stations
from tests.registry.harness import served
from tests.wallet.harness import (
    CPO_ID,
    TARIFF,
    Driver,
    World,
    charge_point_of,
    cpo_headers,
    location,
    wait_for,
)

EUR = 1_000_000


def request(env: World, driver: Driver, station: str, key: str | None = None, **body: Any) -> Any:
    headers = dict(driver.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    payload = {"station_id": station, "connector_id": "1", **body}
    if "max_amount" not in body and "max_kwh" not in body:
        payload["max_amount"] = 5 * EUR
    return env.wallet.post("/v1/sessions", json=payload, headers=headers)


def published(env: World) -> None:
    """Wait until the wallet's outbox relay has published everything committed."""
    relay = env.wallet.app.state.relay  # type: ignore[attr-defined]
    wait_for("outbox relayed", lambda: relay.pending() == 0)


def requested_events(env: World, session: str) -> list[SessionRequested]:
    published(env)
    return [
        e.payload(SessionRequested)
        for e in env.session_events(".requested.v1")
        if e.subject == session
    ]


@pytest.fixture(scope="module")
def station(env: World) -> str:
    station_id = env.station()
    env.charge_point_online(station_id)
    return station_id


@pytest.fixture
def driver(env: World) -> Driver:
    driver = env.driver()
    assert env.top_up(driver, 20 * EUR).status_code == 201
    return driver


def test_request_publishes_one_authorisation_that_opens_on_chain(
    env: World, station: str, driver: Driver
) -> None:
    answer = request(env, driver, station, key="k-1", max_amount=7 * EUR)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["state"] == "requested" and body["max_amount"] == 7 * EUR
    assert body["driver_nonce"] == 1  # lastNonceOf was 0 on chain
    [event] = requested_events(env, body["session_id"])
    assert event.driver_id == driver.driver_id and event.driver_address == driver.address
    assert event.cpo_id == CPO_ID
    assert event.charge_point_id == charge_point_of(station) and event.connector_id == 1
    assert event.station_id == "0x" + station.encode().ljust(32, b"\0").hex()
    assert event.chain_session_id == "0x" + chain_session_id(driver.address, 1).hex()
    assert event.tariff == json.loads(json.dumps(TARIFF))
    assert event.time_zone == "Europe/Berlin"
    assert event.idempotency_key == "k-1"

    # The escrow opens exactly what the event carries; the contract checks the signature.
    request_tuple = (
        bytes.fromhex(event.chain_session_id[2:]),
        bytes.fromhex(event.station_id[2:]),
        event.max_amount,
        int(event.expiry.timestamp()),
        bytes.fromhex(event.authorisation_r[2:]),
        bytes.fromhex(event.authorisation_vs[2:]),
    )
    escrow = env.deployment.escrow
    tx = escrow.functions.openFromDeposit(request_tuple).transact({"from": env.admin})
    assert env.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    assert env.deposit(driver.address) == 13 * EUR
    assert escrow.functions.lastNonceOf(driver.address).call() == 1

    # Once the escrow reports the lock, the maximum is no longer counted as pending.
    opened = EscrowOpened(
        session_id=body["session_id"],
        cpo_id=CPO_ID,
        station_id=event.station_id,
        charge_point_id=event.charge_point_id,
        connector_id=1,
        id_token=event.id_token,
        max_amount=event.max_amount,
        expires_at=event.expiry,
        tx_hash="0x" + bytes(tx).hex(),
    )
    env.publish(opened, body["session_id"])
    path = f"/v1/sessions/{body['session_id']}"
    wait_for("open", lambda: env.wallet.get(path, headers=driver.headers).json()["state"] == "open")
    # A second session takes the next nonce.
    second = request(env, driver, station, key="k-2", max_amount=13 * EUR)
    assert second.status_code == 201, second.text
    assert second.json()["driver_nonce"] == 2


def test_same_idempotency_key_same_session_one_event(
    env: World, station: str, driver: Driver
) -> None:
    first = request(env, driver, station, key="same")
    again = request(env, driver, station, key="same")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["session_id"] == first.json()["session_id"]
    assert len(requested_events(env, first.json()["session_id"])) == 1
    requested_by_driver = [
        e for e in env.session_events(".requested.v1") if e.data["driver_id"] == driver.driver_id
    ]
    assert len(requested_by_driver) == 1

    different = request(env, driver, station, key="same", max_amount=6 * EUR)
    assert different.status_code == 422
    assert "Idempotency-Key" in different.json()["detail"]
    assert request(env, driver, station).status_code == 422  # no key at all


def test_concurrent_requests_with_one_key_make_one_session(
    env: World, station: str, driver: Driver
) -> None:
    answers: list[Any] = []

    def go() -> None:
        answers.append(request(env, driver, station, key="race"))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    assert len({a.json()["session_id"] for a in answers}) == 1
    assert len(requested_events(env, answers[0].json()["session_id"])) == 1


def test_concurrent_requests_never_promise_more_than_the_balance(
    env: World, station: str, driver: Driver
) -> None:
    """Six requests at once for 5 EUR each against 20 EUR: four fit, two are refused."""
    answers: list[Any] = []

    def go(n: int) -> None:
        answers.append(request(env, driver, station, key=f"many-{n}", max_amount=5 * EUR))

    threads = [threading.Thread(target=go, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [201, 201, 201, 201, 422, 422]
    created = [a.json() for a in answers if a.status_code == 201]
    assert sorted(c["driver_nonce"] for c in created) == [1, 2, 3, 4]
    for refused in (a for a in answers if a.status_code == 422):
        assert "above the available balance 0" in refused.json()["detail"]


def test_retired_and_offline_stations_are_refused_with_a_reason(env: World, driver: Driver) -> None:
    offline = env.station()
    env.charge_point_online(offline)
    env.charge_point_offline(offline)
    answer = request(env, driver, offline, key="offline")
    assert answer.status_code == 409
    assert answer.json()["detail"] == (
        f"charge point {charge_point_of(offline)} is offline (socket closed)"
    )

    never_seen = env.station()
    answer = request(env, driver, never_seen, key="never")
    assert answer.status_code == 409 and "is offline" in answer.json()["detail"]

    busy = env.station()
    env.charge_point_online(busy, status="Charging")
    answer = request(env, driver, busy, key="busy")
    assert answer.status_code == 409
    assert answer.json()["detail"] == "connector E1/1 is occupied (status Charging)"

    retired = env.station()
    env.charge_point_online(retired)
    env.retire(retired)
    answer = request(env, driver, retired, key="retired")
    assert answer.status_code == 409
    assert answer.json()["detail"] == f"station {retired} is retired"

    assert request(env, driver, "DE*CNT*NOSUCH", key="x").status_code == 404
    nothing = [e for e in env.session_events() if e.data.get("driver_id") == driver.driver_id]
    assert nothing == []


def test_a_known_station_is_still_decided_by_the_registrys_fresh_answer(
    env: World, driver: Driver
) -> None:
    """The wallet starts on the registry's last answer for a station it knows; the fresh answer,
    awaited before the commit, refuses what the station can no longer do."""
    station = env.station()
    env.charge_point_online(station)
    assert request(env, driver, station, key="known-1").status_code == 201
    env.charge_point_offline(station)
    answer = request(env, driver, station, key="known-2")
    assert answer.status_code == 409
    assert answer.json()["detail"] == (
        f"charge point {charge_point_of(station)} is offline (socket closed)"
    )
    env.charge_point_online(station)
    assert request(env, driver, station, key="known-3").status_code == 201
    env.retire(station)
    answer = request(env, driver, station, key="known-4")
    assert answer.status_code == 409
    assert answer.json()["detail"] == f"station {station} is retired"
    published(env)
    keys = [
        e.data["idempotency_key"]
        for e in env.session_events(".requested.v1")
        if e.data["driver_id"] == driver.driver_id
    ]
    assert sorted(keys) == ["known-1", "known-3"]


def test_station_ids_with_url_delimiters_reach_their_own_station(
    env: World, driver: Driver
) -> None:
    """A station id is any printable ASCII; '#', '?' or '/' in it must not make the wallet read
    another station (``X#1`` read as ``X``: its charge point, tariff and CPO, while the money is
    locked for ``X#1``) nor no station at all."""
    base = env.station()
    env.charge_point_online(base)
    for suffix in ("#1", "?1", "/1"):
        odd = env.station(station_id=base + suffix)
        env.charge_point_online(odd)
        answer = request(env, driver, odd, key=f"odd-{suffix}", max_amount=EUR)
        assert answer.status_code == 201, answer.text
        [event] = requested_events(env, answer.json()["session_id"])
        assert event.station_id == chain_station_id(odd)
        assert event.charge_point_id == charge_point_of(odd) != charge_point_of(base)


def test_registry_clients_quote_a_station_id_for_a_real_http_server(env: World) -> None:
    """Over real HTTP, as in production: the server decodes the path once, so an unquoted
    ``X%41`` reads station ``XA``. (Starlette's TestClient decodes twice, which is why this
    goes through uvicorn.) The wallet's registry client and the pages' both quote."""
    base = f"DE*CNT*S{secrets.token_hex(4).upper()}"
    ids = [base + "%41", base + "A", base + "/1", base]
    with served(env.registry.app) as url, closing(RegistryClient.connect(url)) as client:
        for station_id in ids:
            body = {
                "station_id": station_id,
                "location": location(station_id, 1),
                "tariff": TARIFF,
                "meter_key_hash": "0x" + canonical_hash({"meter": station_id}).hex(),
            }
            answer = env.registry.post("/v1/cpo/stations", json=body, headers=cpo_headers())
            assert answer.status_code == 202, answer.text
        for station_id in ids:
            found = wait_for(f"{station_id} indexed", partial(_found, client, station_id))
            assert (found.station_id, found.chain_id_hex) == (
                station_id,
                chain_station_id(station_id),
            )
            assert asyncio.run(_page_detail(url, station_id))["station_id"] == station_id


def _found(client: RegistryClient, station_id: str) -> Station | None:
    try:
        return client.station(station_id)
    except NotFound:
        return None


async def _page_detail(url: str, station_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url) as http:
        return await Stations(http).detail(station_id)


def test_maximum_above_balance_is_refused_with_a_reason(
    env: World, station: str, driver: Driver
) -> None:
    answer = request(env, driver, station, key="big", max_amount=20 * EUR + 1)
    assert answer.status_code == 422
    assert answer.json()["detail"] == (
        f"max_amount: the maximum {20 * EUR + 1} is above the available balance {20 * EUR} "
        "(top up first)"
    )
    # Requested but not yet locked maxima count against the balance.
    assert request(env, driver, station, key="a", max_amount=15 * EUR).status_code == 201
    second = request(env, driver, station, key="b", max_amount=5 * EUR + 1)
    assert second.status_code == 422
    assert f"available balance {5 * EUR}" in second.json()["detail"]
    wallet = env.wallet.get("/v1/wallet", headers=driver.headers).json()
    assert (wallet["total"], wallet["pending_sessions"], wallet["available"]) == (
        20 * EUR,
        15 * EUR,
        5 * EUR,
    )


def test_maximum_amount_must_be_a_json_integer(env: World, station: str, driver: Driver) -> None:
    """A float max_amount was rounded to an integer and a string taken as a number: money is an
    integer of token base units, anything else is refused with a reason and requests nothing."""
    for amount in ("5000000.0", "9007199254740993.0", '"5000000"', "true"):
        answer = env.wallet.post(
            "/v1/sessions",
            content=f'{{"station_id": "{station}", "connector_id": "1", "max_amount": {amount}}}',
            headers={
                **driver.headers,
                "Idempotency-Key": "strict-max",
                "content-type": "application/json",
            },
        )
        assert answer.status_code == 422, (amount, answer.text)
        [error] = answer.json()["errors"]
        assert error["loc"] == ["body", "max_amount"], error
        assert error["msg"] == "Input should be a valid integer", error
    published(env)
    assert [e for e in env.session_events() if e.data.get("driver_id") == driver.driver_id] == []
    # The key was not used up: the same request with an integer goes through.
    answer = request(env, driver, station, key="strict-max", max_amount=5 * EUR)
    assert answer.status_code == 201, answer.text


def test_maximum_in_kwh_is_priced_by_the_tariff(env: World, station: str, driver: Driver) -> None:
    answer = request(env, driver, station, key="kwh", max_kwh="10")
    assert answer.status_code == 201, answer.text
    # (0.50 flat + 10 kWh x 0.40) x 1.19 VAT = 5.355 EUR, rounded once to the cent
    assert answer.json()["max_amount"] == 5_360_000
    too_much = request(env, driver, station, key="kwh-big", max_kwh="100")
    assert too_much.status_code == 422  # 48.20 EUR, above the 14.64 EUR left


def test_another_drivers_session_is_forbidden(env: World, station: str, driver: Driver) -> None:
    session = request(env, driver, station, key="mine").json()["session_id"]
    other = env.driver()
    path = f"/v1/sessions/{session}"
    assert env.wallet.get(path, headers=other.headers).status_code == 403
    assert env.wallet.post(f"{path}/stop", headers=other.headers).status_code == 403
    assert env.wallet.get(f"{path}/stream", headers=other.headers).status_code == 403
    assert env.wallet.get(path, headers=driver.headers).status_code == 200
    assert env.wallet.get("/v1/sessions/nope", headers=other.headers).status_code == 404
    assert env.wallet.get(path).status_code == 401
    assert [
        s["session_id"]
        for s in env.wallet.get("/v1/sessions", headers=other.headers).json()["sessions"]
    ] == []


def test_live_view_stop_and_stream(env: World, station: str, driver: Driver) -> None:
    session = request(env, driver, station, key="live", max_amount=10 * EUR).json()
    sid = session["session_id"]
    path = f"/v1/sessions/{sid}"
    start = datetime.now(UTC).replace(microsecond=0)
    cp = charge_point_of(station)

    env.publish(
        EscrowOpened(
            session_id=sid,
            cpo_id=CPO_ID,
            station_id=station,
            charge_point_id=cp,
            connector_id=1,
            id_token="x",
            max_amount=10 * EUR,
            expires_at=start + timedelta(hours=4),
            tx_hash="0x" + "11" * 32,
        ),
        sid,
    )
    env.publish(
        SessionStarted(
            session_id=sid,
            charge_point_id=cp,
            connector_id=1,
            transaction_id="t1",
            meter_start_wh=1_000,
            started_at=start,
        ),
        sid,
    )
    reading = MeterReading(
        session_id=sid,
        charge_point_id=cp,
        transaction_id="t1",
        energy_wh=6_000,
        measured_at=start + timedelta(minutes=30),
    )
    env.publish(reading, sid)
    env.publish(reading, sid)  # a second delivery with a new id: the same sample, no change
    live = wait_for(
        "meter applied",
        lambda: (v := env.wallet.get(path, headers=driver.headers).json())["energy_wh"] and v,
    )
    assert live["state"] == "charging"
    assert live["energy_wh"] == 5_000
    assert live["cost_so_far"] == 2_980_000  # (0.50 + 5 kWh x 0.40) x 1.19 = 2.975

    stopped = env.wallet.post(f"{path}/stop", headers=driver.headers)
    assert stopped.status_code == 202 and stopped.json()["stop_requested"]
    # Stopping at once: the live view passes over the wallet's own StopRequested.
    assert stopped.json()["state"] == "stopping"
    assert env.wallet.post(f"{path}/stop", headers=driver.headers).status_code == 202
    published(env)
    stops = [e for e in env.session_events(".stop_requested.v1") if e.subject == sid]
    assert len(stops) == 1 and stops[0].payload(StopRequested).reason == "driver"
    assert env.wallet.get(path, headers=driver.headers).json()["state"] == "stopping"

    def finish() -> None:
        time.sleep(0.3)
        env.publish(
            SessionStopped(
                session_id=sid,
                charge_point_id=cp,
                transaction_id="t1",
                meter_stop_wh=7_000,
                stopped_at=start + timedelta(minutes=40),
                reason="Remote",
            ),
            sid,
        )
        time.sleep(0.3)
        env.publish(
            SessionSettled(
                session_id=sid,
                cpo_id=CPO_ID,
                driver_id=driver.driver_id,
                station_id=station,
                amount_locked=10 * EUR,
                amount_settled=3_450_000,
                cdr={},
                cdr_hash="0x" + "22" * 32,
                tariff=TARIFF,
                settlement_tx_hash="0x" + "33" * 32,
                meter_verified=True,
            ),
            sid,
        )

    threading.Thread(target=finish).start()
    with env.wallet.stream("GET", f"{path}/stream", headers=driver.headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        messages = [
            json.loads(line.removeprefix("data: "))
            for line in response.iter_lines()
            if line.startswith('data: {"')
        ]
    states = [m["state"] for m in messages]
    assert states[0] == "stopping" and states[-1] == "settled"
    assert "stopped" in states
    final = messages[-1]
    assert final["energy_wh"] == 6_000
    assert (final["amount_settled"], final["amount_refunded"]) == (3_450_000, 6_550_000)
    assert env.wallet.post(f"{path}/stop", headers=driver.headers).status_code == 409
    # The repeated reading was absorbed, not retried into the dead-letter topic.
    assert env.bus.events("sessions.dlq") == []


def test_stops_asked_together_are_answered_each_in_one_transaction(
    env: World, station: str, driver: Driver
) -> None:
    """Stops the group commit hands over together: each gets its own answer, a repeat in the
    same batch publishes nothing more, and one refused (another driver's, an unknown id) leaves
    the others stopped."""
    mine = [
        request(env, driver, station, key=f"together-{i}", max_amount=EUR).json()["session_id"]
        for i in range(2)
    ]
    other = env.driver()
    assert env.top_up(other, 5 * EUR).status_code == 201
    theirs = request(env, other, station, key="together", max_amount=EUR).json()["session_id"]
    with env.wallet_db.session() as session:
        me = session.scalars(
            sa.select(WalletDriver).where(WalletDriver.driver_id == driver.driver_id)
        ).one()
    sessions = env.wallet.app.state.sessions  # type: ignore[attr-defined]

    outcomes = sessions.stop_all(
        [(me, mine[0]), (me, theirs), (me, mine[1]), (me, "nope"), (me, mine[0])]
    )

    assert [type(o).__name__ for o in outcomes] == [
        "ChargingSession",
        "Forbidden",
        "ChargingSession",
        "NotFound",
        "ChargingSession",
    ]
    assert [o.session_id for o in outcomes if isinstance(o, ChargingSession)] == [
        mine[0],
        mine[1],
        mine[0],
    ]
    published(env)
    stops = Counter(e.subject for e in env.session_events(".stop_requested.v1"))
    assert (stops[mine[0]], stops[mine[1]], stops[theirs]) == (1, 1, 0)
    view = env.wallet.get(f"/v1/sessions/{theirs}", headers=other.headers).json()
    assert view["stop_requested"] is False
    for session_id in mine:
        view = env.wallet.get(f"/v1/sessions/{session_id}", headers=driver.headers).json()
        assert view["stop_requested"] is True


def test_nonce_skips_ring_slots_of_open_sessions(env: World, station: str, driver: Driver) -> None:
    nonces = [
        request(env, driver, station, key=f"ring-{i}", max_amount=EUR).json()["driver_nonce"]
        for i in range(8)
    ]
    assert nonces == list(range(1, 9))
    ninth = request(env, driver, station, key="ring-8", max_amount=EUR)
    assert ninth.status_code == 409
    assert ninth.json()["detail"] == "at most 8 sessions may be open at once"
    # Settling the session in slot 3 frees exactly that slot: the next nonce is 11 (11 % 8 == 3).
    third = env.wallet.get("/v1/sessions?limit=200", headers=driver.headers).json()["sessions"]
    slot3 = next(s for s in third if s["driver_nonce"] == 3)
    env.publish(
        SessionSettled(
            session_id=slot3["session_id"],
            cpo_id=CPO_ID,
            driver_id=driver.driver_id,
            station_id=station,
            amount_locked=EUR,
            amount_settled=0,
            cdr={},
            cdr_hash="0x" + "00" * 32,
            tariff=TARIFF,
            settlement_tx_hash="0x" + "44" * 32,
            meter_verified=True,
        ),
        slot3["session_id"],
    )
    wait_for(
        "settled",
        lambda: (
            env.wallet.get(f"/v1/sessions/{slot3['session_id']}", headers=driver.headers).json()[
                "state"
            ]
            == "settled"
        ),
    )
    tenth = request(env, driver, station, key=f"ring-{uuid.uuid4().hex}", max_amount=EUR)
    assert tenth.status_code == 201, tenth.text
    assert tenth.json()["driver_nonce"] == 11


def test_stream_sees_a_change_another_replica_applied(
    env: World, station: str, driver: Driver
) -> None:
    """A change this process did not make (another replica's consumer wrote the row) reaches
    the stream through the version poll, well before the keep-alive re-read."""
    sid = request(env, driver, station, key="elsewhere").json()["session_id"]

    def elsewhere() -> None:
        time.sleep(0.3)
        with env.wallet_db.session() as session:
            row = session.get(ChargingSession, sid)
            assert row is not None
            row.state, row.reason, row.version = "failed", "written elsewhere", row.version + 1

    threading.Thread(target=elsewhere).start()
    began = time.monotonic()
    path = f"/v1/sessions/{sid}/stream"
    with env.wallet.stream("GET", path, headers=driver.headers) as response:
        states = [
            json.loads(line.removeprefix("data: "))["state"]
            for line in response.iter_lines()
            if line.startswith('data: {"')
        ]
    assert states == ["requested", "failed"]
    assert time.monotonic() - began < 5  # the keep-alive re-read would come after 15 s
