"""What every connection of one gateway process shares."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from chargenet.core.envelope import EventData
from chargenet.gateway.authz import AuthorizationTable, Decision, Grant, Verdict
from chargenet.gateway.publisher import EventPublisher
from chargenet.gateway.schemas import SchemaRegistry
from chargenet.gateway.settings import GatewaySettings
from chargenet.gateway.transactions import WaitingTransactions

_GRACE_POLL_SECONDS = 0.05
T = TypeVar("T")


@dataclass(slots=True)
class GatewayContext:
    settings: GatewaySettings
    publisher: EventPublisher
    authz: AuthorizationTable
    schemas: SchemaRegistry
    waiting: WaitingTransactions = field(default_factory=WaitingTransactions)

    @property
    def cpo_id(self) -> str:
        return self.settings.cpo_id

    @property
    def replica_id(self) -> str:
        return self.settings.replica_id

    def emit(self, data: EventData, subject: str) -> None:
        self.publisher.publish(data.topic, data, subject)

    async def decide(
        self,
        charge_point_id: str,
        id_token: str,
        *,
        transaction_id: str | None = None,
        connector_id: int | None = None,
    ) -> Decision:
        """Like :meth:`AuthorizationTable.decide`, but gives an ``escrow_opened`` event still on
        its way over the bus (it races the remote start command) a short grace period."""
        return await self._within_grace(
            lambda: self.authz.decide(
                charge_point_id, id_token, transaction_id=transaction_id, connector_id=connector_id
            ),
            lambda decision: decision.verdict is not Verdict.UNKNOWN,
        )

    async def bound_grant(self, charge_point_id: str, transaction_id: str) -> Grant | None:
        """The grant a transaction is bound to, with the same grace for its ``started`` event:
        after a restart the table's replay of the topic may still be on its way, and so may
        another replica's start. None if it is closed or still unknown then."""
        authz = self.authz
        return await self._within_grace(
            lambda: authz.by_transaction(charge_point_id, transaction_id),
            lambda grant: grant is not None or authz.closed(charge_point_id, transaction_id),
        )

    async def _within_grace(self, look: Callable[[], T], found: Callable[[T], bool]) -> T:
        deadline = time.monotonic() + self.settings.authorize_grace_seconds
        while True:
            value = look()
            if found(value) or time.monotonic() >= deadline:
                return value
            await asyncio.sleep(_GRACE_POLL_SECONDS)


def now_text() -> str:
    """The time for a charge point's clock (Heartbeat, BootNotification), to the second."""
    return _clock_text(int(time.time()))


@functools.lru_cache(maxsize=1)
def _clock_text(second: int) -> str:
    # Made once a second: every connected charge point's Heartbeat asks for it.
    return datetime.fromtimestamp(second, UTC).isoformat().replace("+00:00", "Z")
