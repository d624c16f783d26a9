"""Gapless invoice numbers per CPO under concurrent settlements; one invoice per session."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from chargenet.core.db import Database
from chargenet.core.db.tables import OutboxMessage
from chargenet.core.envelope import Envelope
from chargenet.invoicing.consumer import SessionsConsumer
from chargenet.invoicing.events import SessionSettled
from chargenet.invoicing.models import Invoice, RefusedSettlement
from tests.invoicing.conftest import SUPPLIERS

Factory = Callable[..., SessionSettled]
Wrap = Callable[..., Envelope]
URL = "https://meter.example/{session_id}"


def numbers(db: Database) -> dict[str, list[int]]:
    with db.session() as session:
        rows = session.execute(
            sa.select(Invoice.cpo_id, Invoice.sequence).order_by(Invoice.cpo_id, Invoice.sequence)
        ).all()
    result: dict[str, list[int]] = {}
    for cpo, sequence in rows:
        result.setdefault(cpo, []).append(sequence)
    return result


def settle_concurrently(
    db: Database,
    make_settled: Factory,
    wrap: Wrap,
    threads: int,
    per_thread: int,
    batch: int = 1,
) -> None:
    """``threads`` consumers settle sessions of two CPOs at once; each event is delivered twice,
    ``batch`` at a time (the bus's batch handler) or one by one."""
    consumer = SessionsConsumer(db, SUPPLIERS, URL)
    events = [
        wrap(make_settled(f"s-{t}-{i}", cpo_id="CPO-A" if i % 3 else "CPO-B"))
        for t in range(threads)
        for i in range(per_thread)
    ]
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        barrier.wait()
        try:
            mine = events[offset::threads]
            if batch == 1:
                for envelope in mine:
                    consumer(envelope)
                    consumer(envelope)  # a redelivery
            for start in range(0, len(mine) if batch > 1 else 0, batch):
                chunk = mine[start : start + batch]
                consumer.batch(chunk)
                consumer.batch(chunk[::-1])  # a redelivery
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors, errors


def assert_gapless(db: Database, total: int) -> None:
    series = numbers(db)
    assert sum(len(s) for s in series.values()) == total
    for cpo, sequence in series.items():
        assert sequence == list(range(1, len(sequence) + 1)), cpo
    with db.session() as session:
        issued = session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage))
    assert issued == total  # one invoices.issued event per invoice, none for redeliveries


def test_gapless_under_concurrent_settlements_sqlite(
    sqlite_db: Database, make_settled: Factory, wrap: Wrap
) -> None:
    settle_concurrently(sqlite_db, make_settled, wrap, threads=4, per_thread=6)
    assert_gapless(sqlite_db, 24)
    assert sorted(numbers(sqlite_db)) == ["CPO-A", "CPO-B"]


@pytest.mark.postgres
def test_gapless_under_concurrent_settlements_postgres(
    postgres_db: Database, make_settled: Factory, wrap: Wrap
) -> None:
    settle_concurrently(postgres_db, make_settled, wrap, threads=6, per_thread=6)
    assert_gapless(postgres_db, 36)


@pytest.mark.postgres
def test_gapless_under_concurrent_batches_of_settlements_postgres(
    postgres_db: Database, make_settled: Factory, wrap: Wrap
) -> None:
    settle_concurrently(postgres_db, make_settled, wrap, threads=4, per_thread=9, batch=4)
    assert_gapless(postgres_db, 36)


def test_a_batch_of_settlements_issues_each_once_in_order_and_refusals_give_numbers_back(
    sqlite_db: Database, make_settled: Factory, wrap: Wrap
) -> None:
    consumer = SessionsConsumer(sqlite_db, SUPPLIERS, URL)
    first = make_settled("s-1")
    consumer.batch(
        [
            wrap(first, event_id="e-1"),
            wrap(first, event_id="e-1"),  # a repeat in the batch
            wrap(make_settled("s-bad", amount_delta=1)),
            wrap(make_settled("s-2")),
            wrap(first, event_id="e-2"),  # the escrow republished under a new id
        ]
    )
    consumer.batch([wrap(first, event_id="e-1")])  # the bus redelivers
    assert numbers(sqlite_db) == {"CPO1": [1, 2]}
    with sqlite_db.session() as session:
        issued = session.scalars(sa.select(Invoice).order_by(Invoice.sequence)).all()
        assert [i.session_id for i in issued] == ["s-1", "s-2"]
        assert session.get(RefusedSettlement, "s-bad") is not None


def test_a_redelivered_or_republished_event_makes_no_second_invoice(
    sqlite_db: Database, make_settled: Factory, wrap: Wrap
) -> None:
    consumer = SessionsConsumer(sqlite_db, SUPPLIERS, URL)
    settled = make_settled("s-1")
    consumer(wrap(settled, event_id="e-1"))
    consumer(wrap(settled, event_id="e-1"))  # the bus redelivers
    consumer(wrap(settled, event_id="e-2"))  # the escrow republished under a new id
    assert numbers(sqlite_db) == {"CPO1": [1]}


def test_a_refused_settlement_gives_its_number_back(
    sqlite_db: Database, make_settled: Factory, wrap: Wrap
) -> None:
    consumer = SessionsConsumer(sqlite_db, SUPPLIERS, URL)
    consumer(wrap(make_settled("s-bad", amount_delta=1)))  # settled 1 unit more than the CDR says
    consumer(wrap(make_settled("s-good")))
    assert numbers(sqlite_db) == {"CPO1": [1]}
    with sqlite_db.session() as session:
        refused = session.get(RefusedSettlement, "s-bad")
        assert refused is not None
        assert "were settled" in refused.reason
        invoice = session.scalars(sa.select(Invoice)).one()
        assert invoice.session_id == "s-good"


def test_other_session_events_are_ignored(sqlite_db: Database, wrap: Wrap) -> None:
    from chargenet.core.envelope import make_envelope
    from chargenet.core.events import SessionRefunded

    consumer = SessionsConsumer(sqlite_db, SUPPLIERS, URL)
    consumer(
        make_envelope(
            SessionRefunded(session_id="s-9", amount=5, tx_hash="0x1"), subject="s-9", source="t"
        )
    )
    assert numbers(sqlite_db) == {}
