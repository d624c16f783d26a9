"""A task waiting on an event with a timeout stops when it is cancelled, even if the event is
set in the same loop turn (the signer's tracker once kept a shutdown waiting forever)."""

from __future__ import annotations

import asyncio

from chargenet.core.aio import wait_event


async def _poll_until_cancelled(event: asyncio.Event) -> None:
    while True:
        await wait_event(event, 1.0)
        event.clear()


async def _cancel_as_the_event_is_set() -> bool:
    """Whether the task was cancelled within 3 seconds."""
    event = asyncio.Event()
    task = asyncio.create_task(_poll_until_cancelled(event))
    await asyncio.sleep(0.05)
    event.set()
    task.cancel()
    await asyncio.wait([task], timeout=3)
    return task.cancelled()


def test_a_cancel_that_arrives_with_the_event_stops_the_task() -> None:
    assert asyncio.run(_cancel_as_the_event_is_set())


def test_it_says_whether_the_event_was_set() -> None:
    async def both() -> tuple[bool, bool]:
        event = asyncio.Event()
        missed = await wait_event(event, 0.01)
        event.set()
        return missed, await wait_event(event, 0.01)

    assert asyncio.run(both()) == (False, True)
