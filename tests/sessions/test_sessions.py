"""Issue 8's must-show flows across wallet, registry, escrow, gateway and signer.

A driver tops up and asks the wallet to charge; the escrow locks the maximum on chain, the
gateway starts the OCPP charge point, meter values flow, the driver stops, the escrow prices the
CDR and settles: the CPO is paid and the driver gets the rest back, exact to the token unit.
On Kafka, PostgreSQL and the Hardhat node. After every test:
tokens conserved and no session left in a non-final state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from chargenet.core.bus.memory import InMemoryBus
from tests.escrow.harness import expected_price, wait_for
from tests.sessions.harness import Components, Driver, Stack, stack

TOP_UP = 50_000_000
MAXIMUM = 30_000_000


def charge_and_settle(world: Stack, driver: Driver) -> dict[str, object]:
    """The whole flow through the services' own interfaces; returns the wallet's final view."""
    station_id, cp_id = world.station()
    cp = world.connect(station_id, cp_id, auto_transactions=True)
    cp.meter_wh = 1_000
    answer = world.request(driver, station_id, MAXIMUM)
    assert answer.status_code == 201, answer.text
    session_id = answer.json()["session_id"]
    try:
        wait_for("charging", lambda: world.escrow_state(session_id) == "CHARGING", 60)
    finally:
        print(f"escrow: {world.describe(session_id)}; events {world.session_events(session_id)}")
    transaction_id, _tag = world.ocpp.run(cp.started.get(), timeout=10)
    for energy in (4_000, 9_000, 13_345):
        world.ocpp.run(cp.meter_values(1, transaction_id, energy, power_w=11_000))
    live = world.view(driver, session_id)
    print(f"live view before stop: energy {live['energy_wh']} Wh, cost {live['cost_so_far']}")
    stop = world.wallet.post(f"/v1/sessions/{session_id}/stop", headers=driver.headers)
    assert stop.status_code == 202, stop.text
    final = world.await_state(driver, session_id, "settled", 90)
    price = expected_price(13_345 - 1_000)
    assert final["amount_settled"] == price == 6_470_000
    assert world.deposit(driver.address) == TOP_UP - price
    assert world.deposit(world.cpo_address) == price
    kinds = world.session_events(session_id)
    print(
        f"settled {price} of {MAXIMUM} locked: driver deposit {world.deposit(driver.address)}, "
        f"CPO {world.deposit(world.cpo_address)}; refunded {final.get('amount_refunded')}; "
        f"events {kinds}"
    )
    return final


# -- Kafka, PostgreSQL and the Hardhat node ------------------------------------------------------
@pytest.fixture(scope="module")
def databases(postgres_url: str) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database per service (each service owns its own)."""
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    services = ("signer", "registry", "wallet", "escrow")
    names = {s: f"test_{s}_{uuid.uuid4().hex[:8]}" for s in services}
    with admin.connect() as connection:
        for name in names.values():
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = sa.make_url(postgres_url)
    try:
        yield {
            service: base.set(database=name).render_as_string(hide_password=False)
            for service, name in names.items()
        }
    finally:
        with admin.connect() as connection:
            for name in names.values():
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def distributed(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
    databases: dict[str, str],
    rpc_url: str,
) -> Iterator[tuple[Stack, list[Driver]]]:
    components = Components(
        kafka=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        databases=databases,
        rpc_url=rpc_url,
    )
    with stack(tmp_path_factory.mktemp("sessions"), components) as world:
        assert world.escrow_db.is_postgres and world.w3.eth.chain_id == 31337
        yield world, []


@pytest.fixture
def world(distributed: tuple[Stack, list[Driver]]) -> Iterator[tuple[Stack, list[Driver]]]:
    yield distributed
    running, drivers = distributed
    print(f"invariants hold: {running.check_invariants(drivers)}")


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.hardhat
@pytest.mark.slow
def test_request_to_settlement_exact_to_the_unit(world: tuple[Stack, list[Driver]]) -> None:
    running, drivers = world
    driver = running.driver(TOP_UP)
    drivers.append(driver)
    charge_and_settle(running, driver)


def test_embedded_default_request_to_settlement_exact_to_the_unit(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The same flow with the in-process bus, SQLite and the in-process chain."""
    with stack(tmp_path_factory.mktemp("embedded"), Components()) as running:
        assert not running.escrow_db.is_postgres and isinstance(running.bus, InMemoryBus)
        driver = running.driver(TOP_UP)
        charge_and_settle(running, driver)
        print(f"invariants hold: {running.check_invariants([driver])}")


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.hardhat
@pytest.mark.slow
def test_wallet_answers_duplicates_strangers_stations_and_balances(
    world: tuple[Stack, list[Driver]],
) -> None:
    running, drivers = world
    driver, stranger = running.driver(TOP_UP), running.driver(TOP_UP)
    drivers.extend([driver, stranger])
    station_id, cp_id = running.station()
    cp = running.connect(station_id, cp_id, answers={"RemoteStartTransaction": "Rejected"})

    # A maximum above the balance: 422 with the reason.
    above = running.request(driver, station_id, TOP_UP + 1)
    assert above.status_code == 422, above.text
    print(f"422: {above.json()['detail']}")
    assert "above the available balance" in above.json()["detail"]

    # The same idempotency key twice: one session, one escrow, one lock on chain.
    key = uuid.uuid4().hex
    first, again = (running.request(driver, station_id, 10_000_000, key) for _ in range(2))
    assert (first.status_code, again.status_code) == (201, 200)
    session_id = first.json()["session_id"]
    assert again.json()["session_id"] == session_id
    # The charge point refuses to start: cancelled on chain, the whole maximum back.
    final = running.await_state(driver, session_id, "refunded", 60)
    print(f"duplicate key -> one session {session_id}: {final['state']}, reason {final['reason']}")
    with running.escrow_db.session() as session:
        from chargenet.escrow.models import SessionRow

        count = session.scalar(
            sa.select(sa.func.count())
            .select_from(SessionRow)
            .where(SessionRow.idempotency_key == key)
        )
    assert count == 1
    opened = running.deployment.escrow.events.SessionOpened().get_logs(
        from_block=running.deployment_block
    )
    assert sum(1 for e in opened if e["args"]["driver"] == driver.address) == 1
    assert running.deposit(driver.address) == TOP_UP
    assert cp.received[0].action == "RemoteStartTransaction"

    # Another driver's session: 403 to read and to stop.
    peek = running.wallet.get(f"/v1/sessions/{session_id}", headers=stranger.headers)
    halt = running.wallet.post(f"/v1/sessions/{session_id}/stop", headers=stranger.headers)
    assert (peek.status_code, halt.status_code) == (403, 403), (peek.text, halt.text)
    print(f"403: {peek.json()['detail']}")

    # A station whose charge point is offline, and a retired one: 409 with the reason.
    offline_station, _never = running.station()
    offline = running.request(driver, offline_station, 5_000_000)
    assert offline.status_code == 409 and "offline" in offline.json()["detail"], offline.text
    print(f"409: {offline.json()['detail']}")
    running.retire(station_id)
    retired = running.request(driver, station_id, 5_000_000)
    assert retired.status_code == 409 and "retired" in retired.json()["detail"], retired.text
    print(f"409: {retired.json()['detail']}")
