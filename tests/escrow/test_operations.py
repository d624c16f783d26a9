"""The escrow's record of a chain operation: an outcome the signer's stream applied stays
applied, whatever the sender thread records after it (PostgreSQL, where the two run side by
side; SQLite serialises the escrow's transactions), and a failed one counts against the
sessions it was their own."""

from __future__ import annotations

import threading
import time

from chargenet.core.db import Database
from chargenet.escrow.app import migrate
from chargenet.escrow.core import EscrowCore, Tx
from chargenet.escrow.models import ChainOp, SessionRow
from chargenet.escrow.operations import Operations, stage
from chargenet.escrow.settings import EscrowSettings
from chargenet.escrow.states import State
from tests.escrow.harness import CPO_ID, session_row


def test_a_late_sent_mark_does_not_overwrite_an_outcome_applied_meanwhile(
    postgres_database: str,
) -> None:
    db = Database(postgres_database)
    migrate(db)
    core = EscrowCore(EscrowSettings(log_json=False), db)
    operations = Operations(core, signer=None)  # type: ignore[arg-type]  # marking sends nothing
    with db.session() as session:
        session.add(
            ChainOp(
                id="escrow.open.race",
                kind="open",
                function="openFromDeposit",
                key_alias="relayer",
                args="[]",
                sessions="[]",
                status="new",
            )
        )
    try:
        # The stream's outcome, applied with the row locked, while the sender thread (back from
        # the signer) records that the signer has the operation.
        with db.session() as stream:
            op = stream.get(ChainOp, "escrow.open.race", with_for_update=True)
            assert op is not None
            marker = threading.Thread(
                target=operations.mark_sent, args=("escrow.open.race", "0x" + "ab" * 32)
            )
            marker.start()
            time.sleep(0.3)  # the marker is on its way, waiting for the row
            op.status = "final"
        marker.join(timeout=10)
        with db.session() as session:
            op = session.get(ChainOp, "escrow.open.race")
            assert op is not None and op.status == "final"
    finally:
        operations.close()
        db.dispose()


def test_only_settlements_sent_alone_count_against_a_sessions_attempts(
    database: Database,
) -> None:
    """A batch fails whole for one bad session, and ``attempts`` also counts a refused open: a
    session whose open batch and settle batch failed for others' faults went FAILED (the CPO
    unpaid for the energy) after one failure of its own settlement sent alone."""
    migrate(database)
    settings = EscrowSettings(log_json=False, escrow_settle_attempts=2)
    core = EscrowCore(settings, database)
    operations = Operations(core, signer=None)  # type: ignore[arg-type]  # nothing is sent
    key = settings.settler_key(CPO_ID)
    settled = {"amount_settled": 600, "cdr_hash": "0x" + "33" * 32}
    with database.session() as session:
        rows = [
            session_row("s-1", State.SETTLING, attempts=1, **settled),  # its open batch failed
            session_row("s-2", State.SETTLING, **settled),
        ]
        session.add_all(rows)
        session.flush()
        batch = stage(core, Tx(session), "settle", rows, key).id
    try:
        operations.apply(batch, None, "SessionNotOpen (s-2's fault)")
        assert _state("s-1", database) == (State.STOPPED.value, 2)
        for outcome in (State.STOPPED, State.FAILED):  # alone: its own failures, two allowed
            with database.session() as session:
                row = session.get(SessionRow, "s-1")
                assert row is not None
                row.state = State.SETTLING.value
                alone = stage(core, Tx(session), "settle", [row], key).id
            operations.apply(alone, None, "execution reverted")
            assert _state("s-1", database)[0] == outcome.value
    finally:
        operations.close()


def _state(session_id: str, database: Database) -> tuple[str, int]:
    with database.session() as session:
        row = session.get(SessionRow, session_id)
        assert row is not None
        return row.state, row.attempts
