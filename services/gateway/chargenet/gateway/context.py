"""What every connection of one gateway process shares."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chargenet.core.envelope import EventData
from chargenet.gateway.authz import AuthorizationTable, Decision, Verdict
from chargenet.gateway.publisher import EventPublisher
from chargenet.gateway.schemas import SchemaRegistry
from chargenet.gateway.settings import GatewaySettings
from chargenet.gateway.transactions import WaitingTransactions

_GRACE_POLL_SECONDS = 0.05


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
        deadline = time.monotonic() + self.settings.authorize_grace_seconds
        while True:
            decision = self.authz.decide(
                charge_point_id, id_token, transaction_id=transaction_id, connector_id=connector_id
            )
            if decision.verdict is not Verdict.UNKNOWN or time.monotonic() >= deadline:
                return decision
            await asyncio.sleep(_GRACE_POLL_SECONDS)


def now_text() -> str:
    """The time for a charge point's clock (Heartbeat, BootNotification), to the second."""
    return _clock_text(int(time.time()))


@functools.lru_cache(maxsize=1)
def _clock_text(second: int) -> str:
    # Made once a second: every connected charge point's Heartbeat asks for it.
    return datetime.fromtimestamp(second, UTC).isoformat().replace("+00:00", "Z")
