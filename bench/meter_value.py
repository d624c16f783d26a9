"""CPU of the escrow's consumer for one more meter value of a long session, on PostgreSQL: the
sample stored, the session priced so far, the budget checked, committed.

    eval "$(scripts/components/components.sh env)"
    uv run python bench/meter_value.py         # CHARGENET_TEST_POSTGRES_URL names the server

A session at one sample a minute with 15, 360 and 600 samples stored (a quarter of an hour, six
and ten hours). Creates a scratch database, prints the CPU milliseconds of this process per meter
value (the server's share is not counted), and drops the database.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scratch import scratch_database

from chargenet.core.db import Database
from chargenet.core.envelope import make_envelope
from chargenet.core.events import MeterReading
from chargenet.escrow.app import migrate
from chargenet.escrow.core import EscrowCore
from chargenet.escrow.handlers import SessionHandlers
from chargenet.escrow.settings import EscrowSettings

sys.path.insert(0, str(Path(__file__).parent.parent))
from tests.escrow.harness import charging_session  # the tests' session: defined once

LENGTHS = (15, 360, 600)
CALLS = 30
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _charging(db: Database, samples: int) -> str:
    readings = [(T0 + timedelta(minutes=m), m * 180, 11_000) for m in range(samples)]
    return charging_session(db, 10**12, T0, readings)


def _meter(session_id: str, minute: int) -> MeterReading:
    return MeterReading(
        session_id=session_id,
        charge_point_id="CP-1",
        transaction_id="7",
        energy_wh=minute * 180,
        power_w=11_000,
        measured_at=T0 + timedelta(minutes=minute),
    )


def main() -> int:
    with scratch_database("bench_meter") as db:
        migrate(db)
        handlers = SessionHandlers(EscrowCore(EscrowSettings(log_json=False), db), None)
        print("| samples stored | escrow CPU ms per meter value |")
        print("|---|---|")
        for length in LENGTHS:
            session_id = _charging(db, length)
            minute = length
            spent = 0.0
            for call in range(CALLS + 3):  # three to warm up (the first builds the price)
                envelope = make_envelope(
                    _meter(session_id, minute), subject=session_id, source="bench"
                )
                began = time.process_time()
                handlers.handle_batch([envelope])
                if call >= 3:
                    spent += time.process_time() - began
                minute += 1
            print(f"| {length} | {spent / CALLS * 1000:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
