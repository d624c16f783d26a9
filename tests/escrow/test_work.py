"""What a commit leaves the escrow's worker (``core.Work``), and a wake-up running only that."""

from __future__ import annotations

from chargenet.core.db import Database
from chargenet.escrow.app import migrate
from chargenet.escrow.core import EscrowCore, Tx, Work
from chargenet.escrow.models import SessionRow
from chargenet.escrow.settings import EscrowSettings
from chargenet.escrow.states import State
from chargenet.escrow.worker import Worker
from tests.escrow.harness import session_row


def test_a_move_into_a_state_the_worker_acts_on_names_its_work(database: Database) -> None:
    migrate(database)
    with database.session() as session:
        tx = Tx(session)
        tx.move(session_row("s-1", State.OPENING), State.REQUESTED, "the batch was refused")
        assert tx.work == {Work.OPENS}
        tx.move(session_row("s-2", State.CHARGING), State.STOPPED)
        assert tx.work == {Work.OPENS, Work.SETTLES}
        tx.move(session_row("s-3", State.OPEN), State.STARTING)
        assert tx.work == {Work.OPENS, Work.SETTLES}  # nothing for the worker there


def test_a_wake_up_for_settlements_leaves_waiting_requests_alone(database: Database) -> None:
    migrate(database)
    core = EscrowCore(EscrowSettings(log_json=False), database)
    with database.session() as session:
        session.add(session_row("s-1", State.REQUESTED))
    worker = Worker(core, reader=None, operations=_NoSends())  # type: ignore[arg-type]

    worker.tick({Work.SETTLES})

    with database.session() as session:
        row = session.get(SessionRow, "s-1")
        assert row is not None and row.state == State.REQUESTED.value
        assert row.open_op is None


class _NoSends:
    """The worker's operations, with nothing staged to send in this test."""

    def send_new(self) -> int:
        return 0
