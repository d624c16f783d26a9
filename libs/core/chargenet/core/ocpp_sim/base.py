"""What both simulated charge point versions share: the socket task, recorded commands, answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import ocpp.messages
from ocpp import routing
from websockets.asyncio.client import ClientConnection

# The library checks every message against its schema in a thread of the loop's default executor.
# The check takes ~100 us; the hop to the thread and back took more CPU than that (the thread
# waits for the interpreter lock behind the loop), so a fleet of simulated charge points checks
# on its own loop. Only the simulator uses the library's ChargePoint (the gateway has its own
# compiled checks), so this setting of the library touches nothing else.
ocpp.messages.ASYNC_VALIDATION = False


@dataclass(slots=True)
class ReceivedCommand:
    action: str
    payload: dict[str, Any]
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SimulatorMixin:
    """Bookkeeping mixed into the ``ocpp`` library's ChargePoint classes.

    ``check_messages=False`` skips the library's schema check of every message: a quarter of a
    load generator's CPU (bench/e2e.py), taken from the 2 cores the stack under test shares.
    The gateway checks what it receives either way; the tests and the demo keep the check."""

    id: str
    _connection: ClientConnection

    def _init_simulator(self, answers: dict[str, str] | None, check_messages: bool) -> None:
        #: Status to answer per command action (default "Accepted"); tests set refusals here.
        self.answers: dict[str, str] = dict(answers or {})
        self.received: list[ReceivedCommand] = []
        self._received_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Whether each message, sent or received, is checked against its OCPP schema.
        self.check_messages = check_messages
        if not check_messages:
            route_map: dict[str, dict[str, Any]] = self.route_map  # type: ignore[attr-defined]
            for handlers in route_map.values():
                handlers["_skip_schema_validation"] = True

    async def call(
        self,
        payload: Any,
        suppress: bool = True,
        unique_id: str | None = None,
        skip_schema_validation: bool = False,
    ) -> Any:
        return await super().call(  # type: ignore[misc]
            payload,
            suppress,
            unique_id,
            skip_schema_validation or not self.check_messages,
        )

    def _record(self, action: str, payload: dict[str, Any]) -> str:
        self.received.append(ReceivedCommand(action, payload))
        self._received_event.set()
        return self.answers.get(action, "Accepted")

    async def wait_for_command(self, action: str, within: float = 10.0) -> ReceivedCommand:
        """The first received command of ``action`` (waits for it)."""
        async with asyncio.timeout(within):
            while True:
                for command in self.received:
                    if command.action == action:
                        return command
                self._received_event.clear()
                await self._received_event.wait()

    def run(self) -> asyncio.Task[None]:
        """Start reading the socket in the background (needed before any ``call``)."""
        if self._task is None:
            self._task = asyncio.create_task(self._read(), name=f"sim-{self.id}")
        return self._task

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            await self.start()  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self._connection.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    @property
    def socket(self) -> ClientConnection:
        return self._connection


F = TypeVar("F", bound=Callable[..., Any])


def on(action: str) -> Callable[[F], F]:
    """The ``ocpp`` library's ``@on`` with a type (the library ships none)."""
    return cast(Callable[[F], F], routing.on(action))


def after(action: str) -> Callable[[F], F]:
    """The ``ocpp`` library's ``@after`` with a type."""
    return cast(Callable[[F], F], routing.after(action))
