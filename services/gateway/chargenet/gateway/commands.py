"""Commands to charge points, whichever replica holds the socket.

Routing: every command goes to ``gateway-commands.<cpo>`` keyed by charge point id. Every replica
reads the whole topic in a consumer group of its own (``gateway-<cpo>-<replica>``), so every replica
sees every command and only the one holding the socket executes it. Socket ownership travels on the
same topic and key (``connection_claimed`` / ``connection_released``), so for one charge point,
claims and commands reach every replica in one order: a replica that sees a newer claim from
elsewhere closes its socket, and a command issued after a reconnect finds the new owner.

A command for a charge point that is not connected anywhere is answered ``not_connected`` by the
replica that last released its socket; one never seen by any running replica gets no answer, so
issuers keep their own deadline. Results go to ``gateway-results`` keyed by command id.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from websockets.exceptions import ConnectionClosed

from chargenet.core.envelope import Envelope
from chargenet.gateway.connection import CLOSE_REPLACED, CallErrorReceived, ChargePointConnection
from chargenet.gateway.context import GatewayContext
from chargenet.gateway.events import (
    CommandResult,
    CommandStatus,
    ConnectionClaimed,
    ConnectionReleased,
    GatewayCommand,
)
from chargenet.gateway.metrics import COMMAND_RESULTS
from chargenet.gateway.ocppj import FrameError, OcppVersion
from chargenet.gateway.schemas import Direction
from chargenet.gateway.translate import TranslationError, translate

log = logging.getLogger(__name__)

#: What operators and escrow may ask of a charge point, per protocol version.
COMMAND_ACTIONS: dict[OcppVersion, frozenset[str]] = {
    OcppVersion.V16: frozenset(
        {
            "RemoteStartTransaction",
            "RemoteStopTransaction",
            "Reset",
            "ChangeAvailability",
            "TriggerMessage",
            "UnlockConnector",
            "GetConfiguration",
            "ChangeConfiguration",
            "ClearCache",
            "DataTransfer",
        }
    ),
    OcppVersion.V201: frozenset(
        {
            "RequestStartTransaction",
            "RequestStopTransaction",
            "Reset",
            "ChangeAvailability",
            "TriggerMessage",
            "UnlockConnector",
            "GetVariables",
            "SetVariables",
            "ClearCache",
            "DataTransfer",
        }
    ),
}
NOT_CONNECTED = "not connected"
_GOOD_STATUSES = frozenset({"Accepted", "Unlocked", "Scheduled", "RebootRequired"})


def outcome_of(response: dict[str, object]) -> tuple[CommandStatus, str | None]:
    status = response.get("status")
    if status is None:
        return CommandStatus.ACCEPTED, None
    text = str(status)
    return (CommandStatus.ACCEPTED if text in _GOOD_STATUSES else CommandStatus.REJECTED), text


#: Commands whose deadline passed longer ago than this are history, not work.
REPLAY_HORIZON = timedelta(seconds=60)


class CommandRouter:
    def __init__(
        self,
        ctx: GatewayContext,
        connections: dict[str, ChargePointConnection],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.ctx = ctx
        self.connections = connections
        self.loop = loop
        #: charge point id -> (replica id, connection id or None once released), from the topic.
        self.owners: dict[str, tuple[str, str | None]] = {}
        #: charge point id -> the latest claim of its socket seen on the topic.
        self.claims: dict[str, ConnectionClaimed] = {}
        self._tasks: set[concurrent.futures.Future[None]] = set()

    # -- called on the bus consumer thread ---------------------------------------------------
    def on_envelope(self, envelope: Envelope) -> None:
        if envelope.type == GatewayCommand.event_type:
            self._on_command(GatewayCommand.model_validate(envelope.data))
        elif envelope.type == ConnectionClaimed.event_type:
            claim = ConnectionClaimed.model_validate(envelope.data)
            self.owners[claim.charge_point_id] = (claim.replica_id, claim.connection_id)
            self.claims[claim.charge_point_id] = claim
            self._submit(self._on_claim(claim))
        elif envelope.type == ConnectionReleased.event_type:
            release = ConnectionReleased.model_validate(envelope.data)
            if self.owners.get(release.charge_point_id) == (
                release.replica_id,
                release.connection_id,
            ):
                self.owners[release.charge_point_id] = (release.replica_id, None)

    def _submit(self, coroutine: Coroutine[Any, Any, None]) -> None:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)

    def _on_command(self, command: GatewayCommand) -> None:
        if command.deadline < datetime.now(UTC) - REPLAY_HORIZON:
            return  # history replayed by a new replica: answered or timed out long ago
        cp = command.charge_point_id
        held = self.connections.get(cp)
        if held is not None and not _superseded(held, self.claims.get(cp)):
            log.info("%s %s for %s: executing here", command.action, command.command_id, cp)
            self._submit(self.execute(command))
        elif self.owners.get(cp) == (self.ctx.replica_id, None):
            log.info("%s %s for %s: not connected", command.action, command.command_id, cp)
            self._submit(self._answer(command, CommandStatus.ERROR, error=NOT_CONNECTED))
        else:
            log.info(
                "%s %s for %s: socket held by %s",
                command.action,
                command.command_id,
                cp,
                self.owners.get(cp, ("no running replica",))[0],
            )

    # -- on the event loop -------------------------------------------------------------------
    async def _on_claim(self, claim: ConnectionClaimed) -> None:
        held = self.connections.get(claim.charge_point_id)
        if held is not None and _superseded(held, claim):
            held.replaced = True
            await held.close(
                CLOSE_REPLACED, f"replaced by a newer connection on {claim.replica_id}"
            )

    async def execute(self, command: GatewayCommand) -> None:
        connection = self.connections.get(command.charge_point_id)
        if connection is None:
            await self._answer(command, CommandStatus.ERROR, error=NOT_CONNECTED)
            return
        remaining = (command.deadline - datetime.now(UTC)).total_seconds()
        if remaining <= 0:
            await self._answer(command, CommandStatus.TIMED_OUT, error="deadline passed")
            return
        version = connection.version
        try:
            action, payload = translate(
                command.action, command.payload, version, command.command_id
            )
        except TranslationError as untranslatable:
            await self._answer(command, CommandStatus.ERROR, error=str(untranslatable))
            return
        if action not in COMMAND_ACTIONS[version]:
            await self._answer(
                command,
                CommandStatus.ERROR,
                error=f"{command.action} is not a command for OCPP {version.value}",
            )
            return
        try:
            self.ctx.schemas.check(version, action, Direction.REQUEST, payload)
        except FrameError as invalid:
            await self._answer(command, CommandStatus.ERROR, error=invalid.description)
            return
        try:
            response = await connection.call(action, payload, remaining)
        except TimeoutError:
            await self._answer(command, CommandStatus.TIMED_OUT, error="no answer in time")
        except CallErrorReceived as error:
            await self._answer(command, CommandStatus.ERROR, error=str(error))
        except FrameError as invalid:
            await self._answer(command, CommandStatus.ERROR, error=invalid.description)
        except (ConnectionError, ConnectionClosed):
            await self._answer(command, CommandStatus.ERROR, error="connection closed")
        else:
            outcome, status = outcome_of(response)
            await self._answer(command, outcome, ocpp_status=status, response=response)

    async def _answer(
        self,
        command: GatewayCommand,
        outcome: CommandStatus,
        *,
        ocpp_status: str | None = None,
        response: dict[str, object] | None = None,
        error: str | None = None,
    ) -> None:
        COMMAND_RESULTS.labels(command.action, outcome.value).inc()
        self.ctx.emit(
            CommandResult(
                command_id=command.command_id,
                charge_point_id=command.charge_point_id,
                action=command.action,
                status=outcome,
                response=response or {},
                error=error,
                session_id=command.session_id,
                # Extra fields (allowed by EventData): who answered, and the OCPP status text.
                ocpp_status=ocpp_status,
                replica_id=self.ctx.replica_id,
            ),
            command.command_id,
        )

    def cancel_all(self) -> None:
        for future in list(self._tasks):
            future.cancel()


def _superseded(held: ChargePointConnection, claim: ConnectionClaimed | None) -> bool:
    """Whether a newer connection of the charge point, here or on another replica, claimed it.
    A superseded socket stays in ``connections`` until its close handshake ends (up to the close
    timeout for a peer gone quiet); a command run on it would answer a second time, against the
    new owner's answer (an error from the closing socket could cancel a session that charges)."""
    if held.replaced:
        return True
    if claim is None or claim.connection_id == held.connection_id:
        return False
    return (held.connected_at, held.connection_id) < (claim.connected_at, claim.connection_id)
