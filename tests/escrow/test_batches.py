"""The escrow's consumer given batches (what the bus hands over under load), on SQLite and on
PostgreSQL: one transaction per batch, the budget stop exact to the unit, a redelivered batch
changing nothing, a poison event dead-lettered alone, and no deadlock between batches that name
the same sessions in opposite orders.

Sessions are written in CHARGING directly (what ``SessionStarted`` leaves behind); the chain and
the signer play no part in what is tested here (tests/escrow/test_flows.py runs the whole way).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.db import Database, OutboxMessage
from chargenet.core.envelope import Envelope, EventData, make_envelope
from chargenet.core.events import MeterReading, SessionCancelled, SessionRequested, SessionStopped
from chargenet.escrow.app import migrate
from chargenet.escrow.core import EscrowCore
from chargenet.escrow.handlers import SessionHandlers
from chargenet.escrow.models import MeterSampleRow, SessionRow
from chargenet.escrow.settings import EscrowSettings
from tests.escrow.harness import charging_session, expected_price

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
GATEWAY = "chargenet/gateway/test"


@dataclass
class Escrow:
    db: Database
    core: EscrowCore
    handlers: SessionHandlers
    commits: list[int]

    def charging(self, max_amount: int, start_wh: int = 0) -> str:
        """A session in CHARGING with its start reading, as ``SessionStarted`` leaves it."""
        return charging_session(self.db, max_amount, T0, [(T0, start_wh, None)])

    def row(self, session_id: str) -> SessionRow:
        with self.db.session() as session:
            row = session.get(SessionRow, session_id)
            assert row is not None
            return row

    def samples(self, session_id: str) -> int:
        with self.db.session() as session:
            return int(
                session.scalar(
                    sa.select(sa.func.count())
                    .select_from(MeterSampleRow)
                    .where(MeterSampleRow.session_id == session_id)
                )
                or 0
            )

    def outbox(self, session_id: str | None = None) -> list[Envelope]:
        with self.db.session() as session:
            rows = session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.seq))
            events = [Envelope.from_bytes(r.payload) for r in rows]
        return [e for e in events if session_id is None or e.data.get("session_id") == session_id]


@pytest.fixture
def escrow(database: Database) -> Iterator[Escrow]:
    migrate(database)
    commits: list[int] = []
    sa.event.listen(database.engine, "commit", lambda _connection: commits.append(1))
    core = EscrowCore(EscrowSettings(log_json=False), database)
    yield Escrow(database, core, SessionHandlers(core, None), commits)


def event(data: EventData, subject: str) -> Envelope:
    return make_envelope(data, subject=subject, source=GATEWAY)


def meter(session_id: str, energy_wh: int, minute: int) -> Envelope:
    return event(
        MeterReading(
            session_id=session_id,
            charge_point_id="CP-1",
            transaction_id="7",
            energy_wh=energy_wh,
            power_w=11_000,
            measured_at=T0 + timedelta(minutes=minute),
        ),
        session_id,
    )


def stopped(session_id: str, energy_wh: int, minute: int) -> Envelope:
    return event(
        SessionStopped(
            session_id=session_id,
            charge_point_id="CP-1",
            transaction_id="7",
            meter_stop_wh=energy_wh,
            stopped_at=T0 + timedelta(minutes=minute),
            reason="Remote",
        ),
        session_id,
    )


def types(events: list[Envelope]) -> list[str]:
    return [e.type.split(".")[2] for e in events]


def test_meter_values_of_several_sessions_in_one_transaction_with_an_exact_budget_stop(
    escrow: Escrow,
) -> None:
    # Budget of a: 3,000,000 - max(100,000, 5%) = 2,850,000. 3 kWh cost 2.02 EUR, 5 kWh 2.98.
    a, b = escrow.charging(3_000_000), escrow.charging(30_000_000, start_wh=1_000)
    batch = [
        meter(a, 1_000, 1),
        meter(b, 2_000, 1),
        meter(a, 3_000, 2),
        meter(b, 4_000, 2),
        meter(a, 5_000, 3),
        meter(a, 6_000, 4),  # after the stop, before the charge point obeyed: still recorded
    ]
    before = len(escrow.commits)
    escrow.handlers.handle_batch(batch)
    assert len(escrow.commits) - before == 1, "the batch was not one transaction"

    row_a, row_b = escrow.row(a), escrow.row(b)
    assert (row_a.state, row_a.stop_reason) == ("STOPPING", "budget")
    assert row_a.cost_so_far == expected_price(6_000) == 3_450_000
    assert (row_b.state, row_b.cost_so_far) == ("CHARGING", expected_price(3_000))
    assert types(escrow.outbox(a)) == ["stop_requested", "command"]
    assert escrow.outbox(a)[0].data["reason"] == "budget"
    assert escrow.outbox(b) == []
    assert (escrow.samples(a), escrow.samples(b)) == (5, 3)

    # Redelivered, as a batch and one by one: nothing changes.
    escrow.handlers.handle_batch(batch)
    for envelope in batch:
        escrow.handlers(envelope)
    assert (escrow.samples(a), escrow.samples(b)) == (5, 3)
    assert types(escrow.outbox()) == ["stop_requested", "command"]
    assert escrow.row(a).cost_so_far == 3_450_000


def test_a_large_batch_commits_in_chunks_of_the_configured_size(escrow: Escrow) -> None:
    core = EscrowCore(EscrowSettings(log_json=False, escrow_consumer_batch=4), escrow.db)
    handlers = SessionHandlers(core, None)
    a = escrow.charging(30_000_000)
    batch = [meter(a, 100 * minute, minute) for minute in range(1, 11)]
    before = len(escrow.commits)
    handlers.handle_batch(batch)
    assert len(escrow.commits) - before == 3  # 4 + 4 + 2
    assert escrow.samples(a) == 11
    assert escrow.row(a).cost_so_far == expected_price(1_000)


def _sample_reads(escrow: Escrow, batch: list[Envelope]) -> list[str]:
    """The statements reading the samples table while the batch is applied."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()).lower())

    sa.event.listen(escrow.db.engine, "before_cursor_execute", record)
    try:
        escrow.handlers.handle_batch(batch)
    finally:
        sa.event.remove(escrow.db.engine, "before_cursor_execute", record)
    print(f"{len(batch)} meter values: {len(statements)} statements")
    return [s for s in statements if s.startswith("select") and "from escrow_meter_samples" in s]


def test_a_batch_reads_the_samples_once_and_prices_each_session_once(escrow: Escrow) -> None:
    sessions = [escrow.charging(30_000_000) for _ in range(3)]
    batch = [meter(s, 500 * minute, minute) for minute in range(1, 11) for s in sessions]
    # The rows of the sessions this process has no running price of yet (all three: their
    # start samples came before it ran), nothing to count.
    reads = _sample_reads(escrow, batch)
    assert [("count(" in r) for r in reads] == [False], reads
    for session_id in sessions:
        assert escrow.samples(session_id) == 11
        assert escrow.row(session_id).cost_so_far == expected_price(5_000)
    # Running prices known: the next batch counts the samples and books only its own.
    reads = _sample_reads(escrow, [meter(s, 6_000, 12) for s in sessions])
    assert [("count(" in r) for r in reads] == [True], reads
    for session_id in sessions:
        assert escrow.row(session_id).cost_so_far == expected_price(6_000)


def test_a_sample_stored_by_another_replica_makes_the_running_price_start_again(
    escrow: Escrow,
) -> None:
    # Budget: 3,000,000 - 150,000 = 2,850,000; 5 kWh cost 2.98 EUR, past it.
    other = SessionHandlers(escrow.core, None)  # a second replica on the same database
    a = escrow.charging(3_000_000)
    escrow.handlers.handle_batch([meter(a, 1_000, 1)])
    other.handle_batch([meter(a, 5_000, 3)])  # this process did not see it
    # Booked on its own running price, this one would make the cost that of 3 kWh.
    escrow.handlers.handle_batch([meter(a, 3_000, 2)])
    row = escrow.row(a)
    assert row.cost_so_far == expected_price(5_000) == 2_980_000
    assert (row.state, row.stop_reason) == ("STOPPING", "budget")


def test_a_budget_stop_and_the_stop_in_one_batch_keep_their_order(escrow: Escrow) -> None:
    a = escrow.charging(3_000_000)
    escrow.handlers.handle_batch([meter(a, 3_000, 2), meter(a, 5_000, 3), stopped(a, 5_000, 3)])
    row = escrow.row(a)
    # The budget stop came first (as event by event): the session stopped for the budget.
    assert (row.state, row.stop_reason) == ("STOPPED", "budget")
    assert row.amount_settled == expected_price(5_000) == 2_980_000
    assert types(escrow.outbox(a)) == ["stop_requested", "command", "priced"]


def test_the_stops_of_a_batch_read_their_samples_in_one_statement(escrow: Escrow) -> None:
    sessions = [escrow.charging(30_000_000) for _ in range(3)]
    energy = {s: 1_000 * (n + 2) for n, s in enumerate(sessions)}
    reads = _sample_reads(escrow, [stopped(s, energy[s], 2) for s in sessions])
    assert len(reads) == 1, reads
    for session_id in sessions:
        row = escrow.row(session_id)
        assert (row.state, row.amount_settled) == ("STOPPED", expected_price(energy[session_id]))
        assert types(escrow.outbox(session_id)) == ["priced"]


def test_a_session_stopped_in_a_batch_is_closed_before_its_next_event(escrow: Escrow) -> None:
    a = escrow.charging(30_000_000)
    escrow.handlers.handle_batch([stopped(a, 2_000, 2), meter(a, 9_000, 3)])
    row = escrow.row(a)
    # As event by event: the meter value comes to a stopped session and is not booked.
    assert (row.state, row.amount_settled) == ("STOPPED", expected_price(2_000))
    assert escrow.samples(a) == 2  # the start and the stop


def test_a_poison_event_in_a_batch_is_dead_lettered_alone_and_the_rest_apply(
    escrow: Escrow,
) -> None:
    a, b = escrow.charging(30_000_000), escrow.charging(30_000_000)
    poison = Envelope(
        type=MeterReading.event_type,
        source=GATEWAY,
        subject=a,
        data={"session_id": a, "energy_wh": "not a number"},
    )
    bus = InMemoryBus(partitions=2)
    dead: list[Envelope] = []
    bus.subscribe(["sessions.dlq"], "dlq", dead.append)
    for envelope in [meter(a, 1_000, 1), poison, meter(b, 1_000, 1), meter(a, 2_000, 2)]:
        bus.publish("sessions", envelope)
    batches: list[int] = []

    def handle_batch(envelopes: Any) -> None:
        batches.append(len(envelopes))
        escrow.handlers.handle_batch(envelopes)

    bus.subscribe(["sessions"], "escrow", escrow.handlers, batch_handler=handle_batch)
    deadline = time.monotonic() + 30
    while not (dead and escrow.samples(a) == 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    bus.close()
    assert [e.id for e in dead] == [poison.id]
    assert max(batches) > 1
    assert (escrow.samples(a), escrow.samples(b)) == (3, 2)
    assert escrow.row(a).cost_so_far == expected_price(2_000)
    assert escrow.row(b).cost_so_far == expected_price(1_000)


# PostgreSQL only: SQLite serialises the escrow's transactions on a process lock.
@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_batches_naming_the_same_sessions_in_opposite_orders_do_not_deadlock(
    escrow: Escrow,
) -> None:
    assert escrow.db.is_postgres
    sessions = [escrow.charging(1_000_000_000) for _ in range(8)]
    failures: list[BaseException] = []

    def feed(order: list[str], offset: int) -> None:
        try:
            for round_ in range(15):
                minute = 1 + 2 * round_ + offset
                energy = 100 * minute
                escrow.handlers.handle_batch([meter(s, energy, minute) for s in order])
        except BaseException as error:  # a deadlock is raised by PostgreSQL in one of them
            failures.append(error)

    threads = [
        threading.Thread(target=feed, args=(sessions, 0)),
        threading.Thread(target=feed, args=(sessions[::-1], 1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert all(escrow.samples(s) == 31 for s in sessions)


def _request(session_id: str, idempotency_key: str, chain_session_id: str) -> Envelope:
    return make_envelope(
        SessionRequested(
            session_id=session_id,
            driver_id="driver-1",
            driver_address="0x" + "11" * 20,
            cpo_id="cpo-1",
            station_id="0x" + "22" * 32,
            charge_point_id="CP-1",
            connector_id=1,
            max_amount=1_000_000,
            id_token="TOKEN-1",
            idempotency_key=idempotency_key,
            chain_session_id=chain_session_id,
            driver_nonce=1,
            expiry=T0 + timedelta(hours=1),
            authorisation_r="0x" + "00" * 32,
            authorisation_vs="0x" + "00" * 32,
            tariff={},
        ),
        subject=session_id,
        source="chargenet/wallet/test",
    )


def test_a_request_clashing_by_key_or_by_chain_session_is_answered_with_the_one_it_clashes_with(
    escrow: Escrow,
) -> None:
    """Both clashes come from one look-up: the same idempotency key names the session it
    repeats, an escrow session id already taken names its owner; nothing else is stored."""
    chain_session = "0x" + "ab" * 32
    # Without a chain the first is rejected, but stored: it owns its key and its escrow id.
    escrow.handlers.handle_batch([_request("s-1", "key-1", chain_session)])
    escrow.handlers.handle_batch(
        [
            _request("s-2", "key-1", "0x" + "cd" * 32),  # the same key
            _request("s-3", "key-3", chain_session.upper().replace("0X", "0x")),  # the same id
        ]
    )

    reasons = {
        e.data["session_id"]: e.data["reason"]
        for e in escrow.outbox()
        if e.type == SessionCancelled.event_type
    }
    assert reasons["s-2"] == "repeats session s-1 (same idempotency key)"
    assert reasons["s-3"] == "escrow session id already used by session s-1"
    with escrow.db.session() as session:
        stored = session.scalars(sa.select(SessionRow.session_id)).all()
    assert stored == ["s-1"]
