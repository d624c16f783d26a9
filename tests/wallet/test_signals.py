"""The live streams' wake-ups: a change committed in this process hands its row over, so the
stream sends it without reading it back; only the newest version is kept, only while watched."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from chargenet.wallet.models import ChargingSession
from chargenet.wallet.signals import SessionSignals
from tests.wallet.harness import World, requested


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


def test_the_poller_wakes_a_stream_only_for_a_version_it_does_not_have(env: World) -> None:
    """The poll finds what another replica applied; a version the stream has already (it sent
    it, or a commit here handed it over) wakes nobody, so it costs the stream no read."""
    sid = requested(env, "poll").sid
    signals = SessionSignals(env.wallet_db)

    def version() -> int:
        return env.session_row(sid).version

    async def woken(changed: asyncio.Event) -> bool:
        await asyncio.sleep(0.05)  # the wake-up comes through the loop
        was = changed.is_set()
        changed.clear()
        return was

    async def scenario() -> None:
        with signals.watch(sid) as changed:
            signals.seen(sid, version())  # the stream read the row and sent it
            signals.poll_once()
            assert not await woken(changed)
            with env.wallet_db.session() as session:  # another replica applies an event
                row = session.get(ChargingSession, sid)
                assert row is not None
                row.version += 1
            signals.poll_once()
            assert await woken(changed)
            signals.seen(sid, version())
            signals.poll_once()
            assert not await woken(changed)
            committed = _row(sid, version() + 1)  # a commit here hands its row over
            signals.committed([committed])
            assert await woken(changed)
            signals.poll_once()
            assert not await woken(changed)

    asyncio.run(scenario())


def test_a_stream_ends_when_its_driver_leaves(env: World) -> None:
    """The connection closed, the session's stream ends at once and stops watching: the
    response listens for the disconnect, the stream itself does not ask on every change."""
    session = requested(env, "left")
    app = env.wallet.app
    signals: SessionSignals = app.state.signals  # type: ignore[attr-defined]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},  # what uvicorn's h11 server says
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/v1/sessions/{session.sid}/stream",
        "raw_path": f"/v1/sessions/{session.sid}/stream".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in session.driver.headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("wallet", 80),
    }

    async def scenario() -> None:
        left, first = asyncio.Event(), asyncio.Event()
        requested_once = False

        async def receive() -> Message:
            nonlocal requested_once
            if not requested_once:
                requested_once = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if b"data: {" in message.get("body", b""):
                first.set()

        async def serve() -> None:
            await app(scope, receive, send)

        stream = asyncio.create_task(serve())
        await asyncio.wait_for(first.wait(), 10)
        assert session.sid in signals._waiters  # the stream watches while the driver is there
        left.set()
        await asyncio.wait_for(stream, 2)  # not the 15 s keep-alive
        assert session.sid not in signals._waiters

    asyncio.run(scenario())
