"""CPU per call of the database plumbing every service runs per event: the inbox (a consumer's
batch) and the outbox relay (a commit's events), on PostgreSQL.

    eval "$(scripts/components/components.sh env)"
    uv run python bench/plumbing.py            # CHARGENET_TEST_POSTGRES_URL names the server

Creates a scratch database, runs each 300 times after a warm-up, prints the CPU milliseconds of
this process per call (the server's share is not counted), and drops the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from scratch import scratch_database

from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.db.inbox import apply_batch_once, apply_once
from chargenet.core.db.outbox import OutboxRelay, unit_of_work
from chargenet.core.db.tables import CoreBase
from chargenet.core.envelope import Envelope, make_envelope
from chargenet.core.events import SessionCancelled

CALLS = 300


def _event() -> Envelope:
    return make_envelope(
        SessionCancelled(session_id="s", reason="bench"), subject="s", source="bench"
    )


def _cpu_ms(prepare: Callable[[], object], measured: Callable[[object], object]) -> float:
    for _ in range(20):
        measured(prepare())
    spent = 0.0
    for _ in range(CALLS):
        argument = prepare()
        began = time.process_time()
        measured(argument)
        spent += time.process_time() - began
    return spent / CALLS * 1000


def main() -> int:
    with scratch_database("bench_plumbing") as db:
        CoreBase.metadata.create_all(db.engine)
        relay = OutboxRelay(db, InMemoryBus())

        def stage_two() -> None:
            with unit_of_work(db, "bench") as uow:
                for _ in range(2):
                    uow.emit(SessionCancelled(session_id="s", reason="bench"), subject="s")

        def apply_batch(events: Any) -> None:
            apply_batch_once(db, "bench", events, lambda _session, _events: None)

        def apply_one(event: Any) -> None:
            apply_once(db, "bench", event, lambda _session, _event: None)

        batch = _cpu_ms(lambda: [_event() for _ in range(3)], apply_batch)
        single = _cpu_ms(_event, apply_one)
        relayed = _cpu_ms(stage_two, lambda _: relay.relay_once())
        print(f"inbox, a batch of 3 events (apply_batch_once): {batch:.2f} ms CPU")
        print(f"inbox, one event (apply_once): {single:.2f} ms CPU")
        print(f"outbox relay, 2 events (relay_once): {relayed:.2f} ms CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
