"""The escrow end to end on the embedded default: in-process bus, SQLite, py-evm, the real signer,
a real gateway and OCPP 1.6 charge points from the simulator.

One chain for the module; after every test the tokens are conserved and no session is left in a
non-final state (the ``checked`` fixture).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from typing import Any

import pytest
from web3.logs import DISCARD

from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.events import StopRequested
from chargenet.core.ocpp_sim import ChargePoint16
from chargenet.core.pricing import Cdr, Tariff, cdr_hash, price_cdr
from chargenet.escrow.core import Work
from chargenet.escrow.models import ChainOp, SessionRow
from chargenet.gateway.server import Gateway
from tests.escrow.harness import CPO_ID, TARIFF, Rig, expected_price, rig, wait_async
from tests.gateway.conftest import endpoint, running_gateway

CHARGE_POINTS = tuple(f"CP-{n}" for n in range(1, 16))
TOP_UP = 50_000_000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(
        tmp_path_factory.mktemp("escrow"),
        escrow_start_timeout_seconds=3.0,
        escrow_session_timeout_seconds=2.0,
        # wide enough that sessions stopped together in a test settle in one batch
        escrow_settle_delay_seconds=1.0,
    ) as running:
        yield running


@pytest.fixture
def checked(world: Rig) -> Iterator[Rig]:
    yield world
    figures = world.check_invariants()
    print(f"invariants hold: {figures}")


@asynccontextmanager
async def charge_point(
    bus: InMemoryBus, cp_id: str, **options: Any
) -> AsyncIterator[tuple[Gateway, ChargePoint16]]:
    async with running_gateway(bus, CHARGE_POINTS, cpo_id="cpo-test") as gateway:
        cp = await ChargePoint16.connect(endpoint(gateway), cp_id, **options)
        await cp.boot()
        await cp.status(1, "Available")
        try:
            yield gateway, cp
        finally:
            await cp.close()


async def started(cp: ChargePoint16) -> int:
    transaction_id, _tag = await asyncio.wait_for(cp.started.get(), 20)
    return transaction_id


def test_request_open_start_meter_stop_settle_refund_the_rest(checked: Rig) -> None:
    world = checked

    async def scenario() -> None:
        driver = world.driver(TOP_UP)
        async with charge_point(world.bus, "CP-1", auto_transactions=True) as (_gw, cp):
            cp.meter_wh = 1_000
            session = world.request(driver, 1, 30_000_000, "CP-1")
            transaction_id = await started(cp)
            await world.reach(session, "CHARGING")
            for energy in (4_000, 9_000, 13_345):
                await cp.meter_values(1, transaction_id, energy, power_w=11_000)
            world.publish(StopRequested(session_id=session, reason="driver"), session)
            row = await world.reach(session, "SETTLED")
        price = expected_price(13_345 - 1_000)
        assert price == 6_470_000
        assert row.amount_settled == price
        assert world.deposit(driver.address) == TOP_UP - price
        assert world.deposit(world.cpo) == price
        settled = world.events(session, ".settled.v1")[0].data
        assert settled["amount_locked"] == 30_000_000 and settled["amount_settled"] == price
        assert settled["cdr"]["session_id"] == session and settled["cdr_hash"] == row.cdr_hash
        assert settled["tariff"] == TARIFF
        log = world.deployment.escrow.events.SessionSettled().get_logs(from_block=0)
        on_chain = [e["args"] for e in log if "0x" + e["args"]["cdrHash"].hex() == row.cdr_hash]
        assert on_chain[0]["amount"] == price and on_chain[0]["returned"] == 30_000_000 - price
        kinds = [e.type.split(".")[2] for e in world.events(session)]
        assert kinds[:3] == ["requested", "escrow_opened", "started"]
        assert kinds[-2:] == ["priced", "settled"]
        print(
            f"settled {price} of 30000000 locked; driver deposit {world.deposit(driver.address)}, "
            f"CPO {world.deposit(world.cpo)}; events {kinds}"
        )

    asyncio.run(scenario())


def test_budget_stop_before_the_maximum(checked: Rig) -> None:
    world = checked

    async def scenario() -> None:
        driver = world.driver(TOP_UP)
        async with charge_point(world.bus, "CP-2", auto_transactions=True) as (_gw, cp):
            session = world.request(driver, 1, 3_000_000, "CP-2")
            transaction_id = await started(cp)
            await world.reach(session, "CHARGING")
            await cp.meter_values(1, transaction_id, 3_000)  # 2.02 EUR: below the budget
            await asyncio.sleep(0.3)
            assert world.state(session) == "CHARGING"
            await cp.meter_values(1, transaction_id, 5_000)  # 2.98 EUR >= 3.00 - 0.15
            stop = await cp.wait_for_command("RemoteStopTransaction")
            assert stop.payload == {"transaction_id": transaction_id}
            row = await world.reach(session, "SETTLED")
        assert world.events(session, ".stop_requested.v1")[0].data["reason"] == "budget"
        assert row.amount_settled == expected_price(5_000) == 2_980_000
        assert world.deposit(driver.address) == TOP_UP - 2_980_000
        print(f"budget stop at {row.amount_settled} of 3000000 locked")

    asyncio.run(scenario())


def test_rejected_start_is_cancelled_and_refunded(checked: Rig) -> None:
    world = checked

    async def scenario() -> None:
        driver = world.driver(TOP_UP)
        answers = {"RemoteStartTransaction": "Rejected"}
        async with charge_point(world.bus, "CP-3", answers=answers) as (_gw, cp):
            session = world.request(driver, 1, 20_000_000, "CP-3")
            await cp.wait_for_command("RemoteStartTransaction")
            row = await world.reach(session, "REFUNDED")
        assert "did not start" in (row.reason or "")
        assert world.events(session, ".cancelled.v1")
        assert world.events(session, ".refunded.v1")[0].data["amount"] == 20_000_000
        assert world.deposit(driver.address) == TOP_UP
        print(f"rejected start: {row.reason}")

    asyncio.run(scenario())


def test_no_start_before_the_deadline_is_refunded(checked: Rig) -> None:
    world = checked

    async def scenario() -> None:
        driver = world.driver(TOP_UP)
        async with charge_point(world.bus, "CP-4") as (_gw, cp):
            session = world.request(driver, 1, 20_000_000, "CP-4")
            await cp.wait_for_command("RemoteStartTransaction")  # accepted, never started
            row = await world.reach(session, "REFUNDED", within=15)
        assert "deadline" in (row.reason or "")
        assert world.deposit(driver.address) == TOP_UP

    asyncio.run(scenario())


def test_charge_point_vanishing_mid_session_settles_the_last_meter_value(checked: Rig) -> None:
    world = checked

    async def scenario() -> None:
        driver = world.driver(TOP_UP)
        async with charge_point(world.bus, "CP-5", auto_transactions=True) as (_gw, cp):
            session = world.request(driver, 1, 30_000_000, "CP-5")
            transaction_id = await started(cp)
            await world.reach(session, "CHARGING")
            await cp.meter_values(1, transaction_id, 7_500)
            await cp.socket.close()  # gone: no stop, no more meter values
            row = await world.reach(session, "SETTLED", within=15)
        assert "charge point lost" in (row.stop_reason or "")
        assert row.amount_settled == expected_price(7_500)
        assert world.deposit(driver.address) == TOP_UP - expected_price(7_500)
        print(f"lost charge point settled at {row.amount_settled}: {row.stop_reason}")

    asyncio.run(scenario())


def test_duplicates_change_nothing(checked: Rig) -> None:
    world = checked

    async def scenario() -> None:
        driver = world.driver(TOP_UP)
        async with charge_point(world.bus, "CP-6", answers={"RemoteStartTransaction": "Rejected"}):
            first = world.request(driver, 1, 10_000_000, "CP-6", idempotency_key="same-key")
            # The same event redelivered, and a second request with the same idempotency key.
            world.bus.publish("sessions", world.events(first, ".requested.v1")[0])
            second = world.request(driver, 2, 10_000_000, "CP-6", idempotency_key="same-key")
            # On different partitions either may be applied first: that one is the session.
            await wait_async("one of them applied", lambda: world.row(first) or world.row(second))
            kept, repeat = (first, second) if world.row(first) else (second, first)
            await world.reach(kept, "REFUNDED")
            await wait_async("the repeat answered", lambda: world.events(repeat, ".cancelled.v1"))
            await asyncio.sleep(0.5)
        assert world.row(repeat) is None
        [answer] = world.events(repeat, ".cancelled.v1")
        assert answer.data["reason"] == f"repeats session {kept} (same idempotency key)"
        opened = world.deployment.escrow.events.SessionOpened().get_logs(from_block=0)
        assert sum(1 for e in opened if e["args"]["driver"] == driver.address) == 1
        assert len(world.events(kept, ".escrow_opened.v1")) == 1
        assert world.deposit(driver.address) == TOP_UP
        # The repeat's authorisation was never used on chain: nothing is locked for it.
        world.chain_sessions.pop(-1 if repeat == second else -2)

    asyncio.run(scenario())


def test_refused_opens_are_rejected_with_their_reason(checked: Rig) -> None:
    world = checked

    async def scenario() -> None:
        poor = world.driver(1_000_000)
        above = world.request(poor, 1, 5_000_000, "CP-7")
        forged = dict(TARIFF, id="AC-CHEAPER")
        mismatch = world.request(world.driver(TOP_UP), 1, 5_000_000, "CP-7", tariff=forged)
        row = await world.reach(above, "REJECTED")
        assert "InsufficientDeposit" in (row.reason or "")
        row = await world.reach(mismatch, "REJECTED")
        assert "tariff hash" in (row.reason or "")
        # Not an id at all: refused with a reason, not retried and dead-lettered as poison.
        garbled = world.request(world.driver(TOP_UP), 1, 5_000_000, "CP-7", station_id="0xzz")
        row = await world.reach(garbled, "REJECTED")
        assert "station_id" in (row.reason or "")
        await wait_async("cancelled events", lambda: cancelled(world, above, mismatch, garbled))
        world.chain_sessions.clear()  # neither opened

    asyncio.run(scenario())


def cancelled(world: Rig, *sessions: str) -> bool:
    return all(world.events(s, ".cancelled.v1") for s in sessions)


@contextmanager
def held(world: Rig, kind: str, key: str, window: str) -> Iterator[None]:
    """An operation of ``kind`` from ``key`` on its way (a chain op row in status ``sent``) and
    the batch ``window`` (a settings field) far away, so what arrives meanwhile can only wait for
    that operation; on exit it is decided and the worker woken, as the signer's stream would."""
    settings = world.escrow.settings
    before = getattr(settings, window)
    op_id = f"escrow.{kind}.held-by-test.{uuid.uuid4().hex}"
    with world.db.session() as db:
        db.add(
            ChainOp(
                id=op_id,
                kind=kind,
                function="(held by the test)",
                key_alias=key,
                args="[]",
                sessions="[]",
                status="sent",
            )
        )
    setattr(settings, window, 60.0)
    try:
        yield
    finally:
        with world.db.session() as db:
            op = db.get(ChainOp, op_id)
            assert op is not None
            op.status = "final"
        setattr(settings, window, before)
        worker = world.escrow.worker
        assert worker is not None
        worker.wake()


def test_a_lone_request_opens_at_once(checked: Rig) -> None:
    """With no open on its way nothing is gained by waiting: the window is not waited out, and
    the open is staged by the transaction that records the request, not by the worker's next."""
    world = checked
    settings = world.escrow.settings
    before, settings.escrow_open_window_seconds = settings.escrow_open_window_seconds, 60.0
    core = world.escrow.core
    wake = core.on_work
    assert wake is not None
    asked: list[set[Work]] = []  # what each commit left the worker, in order

    def recorded(work: Collection[Work]) -> None:
        asked.append(set(work))
        wake(work)

    async def scenario() -> None:
        driver = world.driver(TOP_UP)
        async with charge_point(world.bus, "CP-13", answers={"RemoteStartTransaction": "Rejected"}):
            core.on_work = recorded
            session = world.request(driver, 1, 10_000_000, "CP-13")
            row = await world.reach(session, "REFUNDED")
        # The request's own commit came first: it left an operation to send, no open to stage.
        assert asked[0] == {Work.SENDS}, asked
        with world.db.session() as db:
            op = db.get(ChainOp, row.open_op)
            assert op is not None
            waited = (op.created_at - row.created_at).total_seconds()
        assert waited < 10, waited  # far below the 60 s window
        print(f"a lone open staged {waited * 1000:.0f} ms after its request")

    try:
        asyncio.run(scenario())
    finally:
        core.on_work = wake
        settings.escrow_open_window_seconds = before


def test_opens_arriving_while_one_is_on_its_way_go_out_as_one_batch(checked: Rig) -> None:
    world = checked
    relayer = world.escrow.settings.escrow_relayer_key

    async def scenario() -> None:
        drivers = [world.driver(TOP_UP) for _ in range(3)]
        async with charge_point(world.bus, "CP-8", answers={"RemoteStartTransaction": "Rejected"}):
            with held(world, "open", relayer, "escrow_open_window_seconds"):
                sessions = [world.request(d, 1, 10_000_000, "CP-8") for d in drivers]
                for session in sessions:
                    await world.reach(session, "REQUESTED")
                await asyncio.sleep(0.5)  # several worker ticks
                assert {world.state(s) for s in sessions} == {"REQUESTED"}
            for session in sessions:
                await world.reach(session, "REFUNDED")
        hashes = {world.row(s).open_tx_hash for s in sessions}  # type: ignore[union-attr]
        assert len(hashes) == 1, hashes
        print(f"3 opens in one transaction {hashes.pop()}")

    asyncio.run(scenario())


def test_a_batch_with_one_bad_open_sends_the_others_alone_and_rejects_that_one(
    checked: Rig,
) -> None:
    """No dry run of the escrow's own: the signer's estimate refuses the whole batch, each open
    then goes alone, the good ones open and the bad one is rejected with the revert's name."""
    world = checked
    relayer = world.escrow.settings.escrow_relayer_key

    async def scenario() -> None:
        good = [world.driver(TOP_UP) for _ in range(2)]
        poor = world.driver(1_000_000)
        async with charge_point(world.bus, "CP-15", answers={"RemoteStartTransaction": "Rejected"}):
            with held(world, "open", relayer, "escrow_open_window_seconds"):
                sessions = [world.request(d, 1, 5_000_000, "CP-15") for d in (*good, poor)]
                for session in sessions:
                    await world.reach(session, "REQUESTED")
            *fine, bad = sessions
            row = await world.reach(bad, "REJECTED")
            assert "InsufficientDeposit" in (row.reason or ""), row.reason
            for session in fine:
                await world.reach(session, "REFUNDED")  # opened, start rejected, refunded
        rows = [world.row(s) for s in fine]
        assert all(r is not None and r.attempts == 1 for r in rows)  # the refused batch
        hashes = {r.open_tx_hash for r in rows if r is not None}
        assert len(hashes) == 2 and None not in hashes, hashes  # each opened alone
        await wait_async("cancelled event", lambda: cancelled(world, bad))
        world.chain_sessions.clear()

    asyncio.run(scenario())


def test_one_drivers_requests_arriving_out_of_order_open_in_one_batch(checked: Rig) -> None:
    """The contract refuses a nonce at or below the driver's last: nonce 2 arriving before
    nonce 1 and sent first in the batch made the whole batch revert."""
    world = checked
    relayer = world.escrow.settings.escrow_relayer_key

    async def scenario() -> None:
        driver = world.driver(TOP_UP)
        async with charge_point(world.bus, "CP-12", answers={"RemoteStartTransaction": "Rejected"}):
            with held(world, "open", relayer, "escrow_open_window_seconds"):
                later = world.request(driver, 2, 5_000_000, "CP-12")
                await world.reach(later, "REQUESTED")
                earlier = world.request(driver, 1, 5_000_000, "CP-12")
                await world.reach(earlier, "REQUESTED")
            rows = [await world.reach(s, "REFUNDED") for s in (earlier, later)]
        assert {r.attempts for r in rows} == {0}
        assert rows[0].open_tx_hash is not None
        assert rows[0].open_tx_hash == rows[1].open_tx_hash  # one batch, in nonce order

    asyncio.run(scenario())


def test_a_request_whose_signature_cannot_be_encoded_is_rejected_and_the_opens_go_on(
    checked: Rig,
) -> None:
    """Arriving while an open is on its way, it once stayed REQUESTED: building its open
    raised in every batch it was picked for, and the worker's opens, settlements and sends
    stopped for good."""
    world = checked
    relayer = world.escrow.settings.escrow_relayer_key

    async def scenario() -> None:
        async with charge_point(world.bus, "CP-13", answers={"RemoteStartTransaction": "Rejected"}):
            with held(world, "open", relayer, "escrow_open_window_seconds"):
                garbled = world.request(
                    world.driver(TOP_UP), 1, 5_000_000, "CP-13", authorisation_r="0x12G4"
                )
                good = world.request(world.driver(TOP_UP), 1, 5_000_000, "CP-13")
                row = await world.reach(garbled, "REJECTED")
                assert row.reason == "authorisation_r: not a 0x-hex bytes32"
                await world.reach(good, "REQUESTED")
            await world.reach(good, "REFUNDED")  # opened, start rejected, refunded
        await wait_async("cancelled event", lambda: cancelled(world, garbled))

    asyncio.run(scenario())


def test_an_open_held_back_goes_when_its_window_ends_not_at_the_next_tick(checked: Rig) -> None:
    """Nothing commits while a request waits for the open on its way: the worker must still
    come back when the request's window ends, not sleep out its poll interval."""
    world = checked
    settings = world.escrow.settings
    relayer = settings.escrow_relayer_key
    tick, settings.escrow_tick_seconds = settings.escrow_tick_seconds, 60.0

    async def scenario() -> None:
        driver = world.driver(TOP_UP)
        async with charge_point(world.bus, "CP-14", answers={"RemoteStartTransaction": "Rejected"}):
            with held(world, "open", relayer, "escrow_open_window_seconds"):
                settings.escrow_open_window_seconds = 1.0
                session = world.request(driver, 1, 10_000_000, "CP-14")
                deadline = asyncio.get_running_loop().time() + 20
                while world.row(session) is None or world.row(session).open_op is None:  # type: ignore[union-attr]
                    assert asyncio.get_running_loop().time() < deadline, "still held"
                    await asyncio.sleep(0.05)
            row = await world.reach(session, "REFUNDED")
        with world.db.session() as db:
            op = db.get(ChainOp, row.open_op)
            assert op is not None
            waited = (op.created_at - row.created_at).total_seconds()
        assert 0.9 <= waited < 5, waited
        print(f"held back, then staged {waited * 1000:.0f} ms after its request (window 1 s)")

    try:
        asyncio.run(scenario())
    finally:
        settings.escrow_tick_seconds = tick


def test_a_late_budget_stop_settles_the_maximum_and_hashes_the_capped_cdr(checked: Rig) -> None:
    world = checked

    async def scenario() -> None:
        driver = world.driver(TOP_UP)
        async with charge_point(world.bus, "CP-9", auto_transactions=True) as (_gw, cp):
            session = world.request(driver, 1, 4_000_000, "CP-9")
            transaction_id = await started(cp)
            await world.reach(session, "CHARGING")
            # One coarse meter value jumps from nothing to 4.88 EUR, past the 4.00 locked.
            await cp.meter_values(1, transaction_id, 9_000)
            await cp.wait_for_command("RemoteStopTransaction")
            row = await world.reach(session, "SETTLED")
        price = expected_price(9_000)
        assert price == 4_880_000
        assert row.amount_settled == 4_000_000
        assert world.deposit(driver.address) == TOP_UP - 4_000_000
        settled = world.events(session, ".settled.v1")[0].data
        assert settled["amount_settled"] == 4_000_000
        assert settled["price_before_cap"] == price
        cdr = Cdr.model_validate(settled["cdr"])
        assert cdr.total_cost.incl_vat == Decimal("4.00")
        assert cdr.total_cost.excl_vat == Decimal("3.36")  # 4.00 / 1.19, half up
        assert cdr.remark is not None and "CAPPED AT THE LOCKED MAXIMUM" in cdr.remark
        assert cdr.charging_periods  # what was supplied stays checkable
        assert price_cdr(Tariff.model_validate(TARIFF), cdr).total_incl_vat_units == price
        digest = "0x" + cdr_hash(cdr).hex()
        assert digest == settled["cdr_hash"] == row.cdr_hash
        log = world.deployment.escrow.events.SessionSettled().get_logs(from_block=0)
        on_chain = [e["args"] for e in log if "0x" + e["args"]["cdrHash"].hex() == digest]
        assert len(on_chain) == 1
        assert on_chain[0]["amount"] == 4_000_000 and on_chain[0]["returned"] == 0
        print(f"priced {price}, settled {row.amount_settled}; CDR remark: {cdr.remark}")

    asyncio.run(scenario())


def test_sessions_stopped_during_a_settlement_settle_in_one_batch(checked: Rig) -> None:
    world = checked
    names = ("CP-10", "CP-11", "CP-12")

    async def scenario() -> None:
        drivers = [world.driver(TOP_UP) for _ in names]
        async with running_gateway(world.bus, CHARGE_POINTS, cpo_id="cpo-test") as gateway:
            points = [
                await ChargePoint16.connect(endpoint(gateway), name, auto_transactions=True)
                for name in names
            ]
            try:
                for cp in points:
                    await cp.boot()
                    await cp.status(1, "Available")
                sessions = [
                    world.request(d, 1, 10_000_000, name)
                    for d, name in zip(drivers, names, strict=True)
                ]
                for cp, session in zip(points, sessions, strict=True):
                    transaction_id = await started(cp)
                    await world.reach(session, "CHARGING")
                    await cp.meter_values(1, transaction_id, 2_000)
                # As an open batch that failed and was retried alone leaves it: that says
                # nothing about its settlement, which must still join the batch.
                with world.db.session() as db:
                    retried = db.get(SessionRow, sessions[0])
                    assert retried is not None
                    retried.attempts = 1
                settler = world.escrow.settings.settler_key(CPO_ID)
                with held(world, "settle", settler, "escrow_settle_delay_seconds"):
                    for session in sessions:
                        world.publish(StopRequested(session_id=session, reason="driver"), session)
                    for session in sessions:
                        await world.reach(session, "STOPPED")
                rows = [await world.reach(s, "SETTLED") for s in sessions]
            finally:
                for cp in points:
                    await cp.close()
        hashes = {row.close_tx_hash for row in rows}
        assert len(hashes) == 1, hashes
        tx_hash = hashes.pop()
        assert tx_hash is not None
        receipt = world.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        logs = world.deployment.escrow.events.SessionSettled().process_receipt(
            receipt, errors=DISCARD
        )
        assert len(logs) == len(sessions)
        assert {"0x" + e["args"]["cdrHash"].hex() for e in logs} == {r.cdr_hash for r in rows}
        sent = world.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        function, _args = world.deployment.escrow.decode_function_input(sent["input"])
        assert function.fn_name == "settleBatch"
        print(f"{len(logs)} sessions settled by one settleBatch {tx_hash}")

    asyncio.run(scenario())
