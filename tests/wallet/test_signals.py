"""The live streams' wake-ups: a change committed in this process hands its row over, so the
stream sends it without reading it back; only the newest version is kept, only while watched."""

from __future__ import annotations

import asyncio

from chargenet.wallet.models import ChargingSession
from chargenet.wallet.signals import SessionSignals


def _row(session_id: str, version: int) -> ChargingSession:
    return ChargingSession(session_id=session_id, version=version, state="charging")


def test_the_newest_committed_row_of_a_watched_session_is_kept() -> None:
    signals = SessionSignals()

    async def scenario() -> None:
        signals.committed([_row("s-1", 3)])
        assert signals.latest("s-1") is None  # nobody watches it: nothing kept
        with signals.watch("s-1") as changed:
            signals.committed([_row("s-1", 4)])
            await asyncio.wait_for(changed.wait(), 1)
            kept = signals.latest("s-1")
            assert kept is not None and kept.version == 4
            signals.committed([_row("s-1", 3)])  # an older commit, notified late
            kept = signals.latest("s-1")
            assert kept is not None and kept.version == 4
            signals.notify(["s-1"])  # woken without a row (e.g. another replica's change)
            kept = signals.latest("s-1")
            assert kept is not None and kept.version == 4
        assert signals.latest("s-1") is None  # the last stream left

    asyncio.run(scenario())
