"""One charge point's socket: read frames in order, answer CALLs, carry the gateway's own CALLs.

Frames are handled one after another in the read loop, which is what keeps a charge point's
messages in order; the loop only awaits the socket (and, for an unknown id token, a short grace
period), never the bus. Everything bad a charge point sends is answered or ends *its* socket only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import datetime
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from chargenet.gateway import handlers16, handlers201, ocppj
from chargenet.gateway.context import GatewayContext
from chargenet.gateway.metrics import HANDLER_LATENCY, MESSAGES, REJECTED_FRAMES
from chargenet.gateway.ocppj import ErrorKind, FrameError, OcppVersion
from chargenet.gateway.schemas import KNOWN_ACTIONS, Direction

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008
FLOOD_CLOSE_TIMEOUT_SECONDS = 0.5
#: Application close code: a newer socket for the same charge point took over.
CLOSE_REPLACED = 4001

_HANDLERS = {OcppVersion.V16: handlers16.HANDLERS, OcppVersion.V201: handlers201.HANDLERS}
_message_ids = itertools.count(1)


class CallErrorReceived(Exception):
    def __init__(self, code: str, description: str, details: dict[str, Any]) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details


class ChargePointConnection:
    # Slots: ten thousand of these live in one process.
    __slots__ = (
        "_call_lock",
        "_pending",
        "_tokens",
        "_tokens_at",
        "charge_point_id",
        "close_reason",
        "connected_at",
        "connection_id",
        "ctx",
        "replaced",
        "version",
        "ws",
    )

    def __init__(
        self,
        ctx: GatewayContext,
        ws: ServerConnection,
        charge_point_id: str,
        version: OcppVersion,
        connection_id: str,
        connected_at: datetime,
    ) -> None:
        self.ctx = ctx
        self.ws = ws
        self.charge_point_id = charge_point_id
        self.version = version
        self.connection_id = connection_id
        self.connected_at = connected_at
        self.close_reason = ""
        self.replaced = False
        self._tokens = float(ctx.settings.rate_limit_burst)
        self._tokens_at = time.monotonic()
        self._call_lock: asyncio.Lock | None = None
        self._pending: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] | None = None

    # -- reading ---------------------------------------------------------------------------
    async def run(self) -> None:
        ws = self.ws
        try:
            async for raw in ws:
                if not self._take_token():
                    REJECTED_FRAMES.labels("rate_limit").inc()
                    # The flooder's unread frames fill the receive queue, which pauses reading,
                    # so its close reply may never be read: do not wait the full close timeout.
                    self.ws.close_timeout = FLOOD_CLOSE_TIMEOUT_SECONDS
                    await self.close(CLOSE_POLICY, "rate limit exceeded")
                    return
                await self._on_frame(raw)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else (closed.sent.code if closed.sent else None)
            if code == 1009:
                REJECTED_FRAMES.labels("oversized").inc()
                self.close_reason = self.close_reason or "frame larger than max_frame_bytes"
            self.close_reason = self.close_reason or f"connection closed ({code})"
        finally:
            if not self.close_reason:
                code = ws.close_code
                self.close_reason = f"closed by the charge point ({code})"
            if self._pending:
                for _action, future in self._pending.values():
                    if not future.done():
                        future.set_exception(ConnectionError("the charge point disconnected"))

    def _take_token(self) -> bool:
        settings = self.ctx.settings
        now = time.monotonic()
        self._tokens = min(
            float(settings.rate_limit_burst),
            self._tokens + (now - self._tokens_at) * settings.rate_limit_per_second,
        )
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def close(self, code: int, reason: str) -> None:
        self.close_reason = reason
        log.warning(
            "closing %s: %s",
            self.charge_point_id,
            reason,
            extra={"fields": {"charge_point_id": self.charge_point_id, "close_code": code}},
        )
        await self.ws.close(code, reason)

    async def _on_frame(self, raw: str | bytes) -> None:
        started = time.perf_counter()
        try:
            if isinstance(raw, bytes):
                raise FrameError(ErrorKind.RPC_FRAMEWORK, "OCPP-J frames are text, not binary")
            frame = ocppj.parse(raw)
        except FrameError as error:
            REJECTED_FRAMES.labels(error.kind.value).inc()
            self._log_rejected(error)
            await self._send_error(error)
            return
        if type(frame) is ocppj.Call:
            await self._on_call(frame, started)
        elif type(frame) is ocppj.CallResult:
            self._on_result(frame.message_id, frame.payload, None)
        elif type(frame) is ocppj.CallError:
            received = CallErrorReceived(frame.code, frame.description, frame.details)
            self._on_result(frame.message_id, None, received)

    async def _on_call(self, call: ocppj.Call, started: float) -> None:
        action = call.action
        version = self.version
        handler = _HANDLERS[version].get(action)
        if handler is None:
            known = action in KNOWN_ACTIONS[version]
            kind = ErrorKind.NOT_SUPPORTED if known else ErrorKind.NOT_IMPLEMENTED
            why = "is not accepted from a charge point" if known else "is not an OCPP action"
            error = FrameError(kind, f"{action[:64]} {why}", call.message_id)
            REJECTED_FRAMES.labels("unknown_action").inc()
            self._log_rejected(error)
            await self._send_error(error)
            return
        schemas = self.ctx.schemas
        try:
            schemas.check(version, action, Direction.REQUEST, call.payload)
            if action in schemas.relaxed:
                violation = schemas.violation(version, action, Direction.REQUEST, call.payload)
                if violation:
                    REJECTED_FRAMES.labels("schema_relaxed").inc()
                    log.info("relaxed %s from %s: %s", action, self.charge_point_id, violation)
            response = await handler(self.ctx, self.charge_point_id, call.payload)
        except FrameError as error:
            error.message_id = call.message_id
            REJECTED_FRAMES.labels("schema").inc()
            self._log_rejected(error)
            await self._send_error(error)
            return
        except (KeyError, TypeError, ValueError, ArithmeticError) as error:
            # Only a relaxed (unchecked) payload can get here: it lacked what the handler needs.
            failure = FrameError(ErrorKind.FORMAT, f"{action}: unusable payload ({error!r})")
            failure.message_id = call.message_id
            REJECTED_FRAMES.labels("unusable_payload").inc()
            self._log_rejected(failure)
            await self._send_error(failure)
            return
        except Exception:
            log.exception("%s from %s failed", action, self.charge_point_id)
            await self._send_error(
                FrameError(ErrorKind.INTERNAL, "the gateway failed to handle it", call.message_id)
            )
            return
        await self.ws.send(ocppj.result_frame(call.message_id, response))
        HANDLER_LATENCY(action).observe(time.perf_counter() - started)
        MESSAGES(action, "in").inc()

    def _log_rejected(self, error: FrameError) -> None:
        log.warning(
            "rejected frame from %s: %s",
            self.charge_point_id,
            error.description,
            extra={"fields": {"charge_point_id": self.charge_point_id, "reason": error.kind}},
        )

    async def _send_error(self, error: FrameError) -> None:
        code = ocppj.error_code(self.version, error.kind)
        await self.ws.send(ocppj.error_frame(error.message_id, code, error.description))

    # -- calling the charge point ------------------------------------------------------------
    def _on_result(
        self, message_id: str, payload: dict[str, Any] | None, error: CallErrorReceived | None
    ) -> None:
        entry = self._pending.pop(message_id, None) if self._pending else None
        if entry is None:
            REJECTED_FRAMES.labels("unknown_message_id").inc()
            log.warning(
                "answer from %s for unknown message id %s ignored",
                self.charge_point_id,
                message_id,
            )
            return
        action, future = entry
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
            return
        assert payload is not None
        try:
            self.ctx.schemas.check(self.version, action, Direction.RESPONSE, payload)
        except FrameError as invalid:
            REJECTED_FRAMES.labels("schema").inc()
            future.set_exception(invalid)
            return
        future.set_result(payload)

    async def call(
        self, action: str, payload: dict[str, Any], timeout_seconds: float
    ) -> dict[str, Any]:
        """Send one CALL and wait for its answer. OCPP allows one open CALL per direction, so
        concurrent commands queue here (their wait counts against their timeout)."""
        if self._call_lock is None:
            self._call_lock = asyncio.Lock()
        async with asyncio.timeout(timeout_seconds), self._call_lock:
            if self._pending is None:
                self._pending = {}
            message_id = f"{self.ctx.replica_id[:16]}-{next(_message_ids)}"
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending[message_id] = (action, future)
            try:
                await self.ws.send(ocppj.call_frame(message_id, action, payload))
                MESSAGES(action, "out").inc()
                return await future
            finally:
                self._pending.pop(message_id, None)
