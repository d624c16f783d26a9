"""The escrow's record of a chain operation never goes back: an outcome the signer's stream
applied stays applied, whatever the sender thread records after it (PostgreSQL, where the two
run side by side; SQLite serialises the escrow's transactions)."""

from __future__ import annotations

import threading
import time

from chargenet.core.db import Database
from chargenet.escrow.app import migrate
from chargenet.escrow.core import EscrowCore
from chargenet.escrow.models import ChainOp
from chargenet.escrow.operations import Operations
from chargenet.escrow.settings import EscrowSettings


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
