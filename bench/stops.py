"""CPU per stop of the wallet's stop transaction on PostgreSQL, one stop at a time and N together.

    eval "$(scripts/components/components.sh env)"
    uv run python bench/stops.py            # CHARGENET_TEST_POSTGRES_URL names the server

Stops asked at the same moment share one transaction (``core.db.group_commit``); this prints what
one stop costs the calling process (the server's share is not counted) when its transaction
carries 1, 5, 20 or 50 stops. Creates a scratch database and drops it.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from scratch import scratch_database

from chargenet.core.db import Database
from chargenet.wallet.app import migrate
from chargenet.wallet.models import ChargingSession, Driver
from chargenet.wallet.sessions import Sessions
from chargenet.wallet.signals import SessionSignals

STOPS_PER_SIZE = 300
SIZES = (1, 5, 20, 50)


def _charging(db: Database, count: int) -> tuple[Driver, list[str]]:
    """A driver with ``count`` charging sessions."""
    ids = [uuid.uuid4().hex for _ in range(count)]
    now = datetime.now(UTC)
    with db.session() as session:
        driver = Driver(
            driver_id="bench", key_alias="bench", address="0x" + "1" * 40, id_token="BENCH"
        )
        session.add(driver)
        for nonce, session_id in enumerate(ids):
            session.add(
                ChargingSession(
                    session_id=session_id,
                    driver_id="bench",
                    idempotency_key=session_id,
                    request_hash="-",
                    station_id="-",
                    cpo_id="-",
                    charge_point_id="-",
                    connector_id=1,
                    max_amount=1,
                    currency="EUR",
                    tariff="{}",
                    time_zone="UTC",
                    chain_session_id="0x" + session_id,
                    driver_nonce=nonce,
                    expiry=now + timedelta(hours=1),
                    state="charging",
                )
            )
    return driver, ids


def main() -> None:
    with scratch_database("bench_stops") as db:
        migrate(db)
        driver, ids = _charging(db, STOPS_PER_SIZE * (len(SIZES) + 1))
        # Only what a stop uses: its database and the live streams it wakes (none here).
        sessions = Sessions.__new__(Sessions)
        sessions.db, sessions.signals = db, SessionSignals()
        left = iter(ids)
        for size in (SIZES[0], *SIZES):  # the first round warms the connection pool up
            asks = [(driver, next(left)) for _ in range(STOPS_PER_SIZE)]
            began = time.thread_time()
            for start in range(0, len(asks), size):
                outcomes = sessions.stop_all(asks[start : start + size])
                assert all(isinstance(o, ChargingSession) for o in outcomes), outcomes
            spent = (time.thread_time() - began) * 1000 / len(asks)
            print(f"{size:3d} stops a transaction: {spent:.2f} CPU ms a stop", flush=True)


if __name__ == "__main__":
    main()
