"""CPU of the consumers for one more meter value of a long session, on PostgreSQL: the escrow's
(the sample stored, the session priced so far, the budget checked, committed) and the wallet's
live view (the point stored, the cost so far priced, the row updated, committed).

    eval "$(scripts/components/components.sh env)"
    uv run python bench/meter_value.py         # CHARGENET_TEST_POSTGRES_URL names the server

A session at one sample a minute with 15, 360 and 600 samples stored (a quarter of an hour, six
and ten hours). Creates scratch databases, prints the CPU milliseconds of this process per meter
value (the server's share is not counted), and drops them.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
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
from chargenet.wallet.app import migrate as migrate_wallet
from chargenet.wallet.models import ChargingSession, MeterPoint
from chargenet.wallet.projection import SessionProjection

sys.path.insert(0, str(Path(__file__).parent.parent))
from tests.escrow.harness import TARIFF, charging_session  # the tests' session: defined once

LENGTHS = (15, 360, 600)
CALLS = 100
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


def _wallet_charging(db: Database, samples: int) -> str:
    """A wallet row in ``charging`` with ``samples`` points stored, as the live view leaves it."""
    session_id = uuid.uuid4().hex
    with db.session() as session:
        session.add(
            ChargingSession(
                session_id=session_id,
                driver_id="driver-1",
                idempotency_key=session_id,
                request_hash="0" * 64,
                station_id="0x" + "22" * 32,
                cpo_id="cpo-a",
                charge_point_id="CP-1",
                connector_id=1,
                max_amount=10**12,
                currency="EUR",
                tariff=json.dumps(TARIFF),
                time_zone="UTC",
                chain_session_id="0x" + session_id * 2,
                driver_nonce=1,
                expiry=T0 + timedelta(days=1),
                state="charging",
                meter_start_wh=0,
                started_at=T0,
            )
        )
        session.flush()
        session.add_all(
            MeterPoint(
                session_id=session_id,
                measured_at=T0 + timedelta(minutes=m),
                energy_wh=m * 180,
                power_w=11_000,
            )
            for m in range(samples)
        )
    return session_id


def _per_meter_value(
    db: Database, charging: Callable[[Database, int], str], handle: Callable[[list], None]
) -> list[float]:
    """CPU ms per meter value for each of LENGTHS."""
    figures = []
    for length in LENGTHS:
        session_id = charging(db, length)
        minute = length
        spent = 0.0
        for call in range(CALLS + 3):  # three to warm up (the first builds the price)
            envelope = make_envelope(_meter(session_id, minute), subject=session_id, source="bench")
            began = time.process_time()
            handle([envelope])
            if call >= 3:
                spent += time.process_time() - began
            minute += 1
        figures.append(spent / CALLS * 1000)
    return figures


def main() -> int:
    with scratch_database("bench_meter") as db:
        migrate(db)
        handlers = SessionHandlers(EscrowCore(EscrowSettings(log_json=False), db), None)
        escrow = _per_meter_value(db, _charging, handlers.handle_batch)
    with scratch_database("bench_meter_wallet") as db:
        migrate_wallet(db)
        wallet = _per_meter_value(db, _wallet_charging, SessionProjection(db).batch)
    print("| samples stored | escrow CPU ms per meter value | wallet CPU ms per meter value |")
    print("|---|---|---|")
    for length, mine, theirs in zip(LENGTHS, escrow, wallet, strict=True):
        print(f"| {length} | {mine:.2f} | {theirs:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
