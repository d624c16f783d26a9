"""One charge point's socket: handle its frames in order, answer CALLs, carry the gateway's CALLs.

A frame that can be answered at once is handled on the socket's read callback
(:mod:`chargenet.gateway.inline_socket`); one whose handler has to wait (an id token whose escrow
event is still on its way gets a short grace period) goes to the queue :meth:`run` reads, and so
does everything after it until that queue is empty: either way in the charge point's order, and
neither path ever waits for the bus. Everything bad a charge point sends is answered or ends *its*
socket only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Coroutine
from datetime import datetime
from typing import Any

from websockets.exceptions import ConnectionClosed

from chargenet.gateway import handlers16, handlers201, ocppj
from chargenet.gateway.context import GatewayContext
from chargenet.gateway.handlers_common import Payload, UnknownTransaction
from chargenet.gateway.inline_socket import InlineServerConnection
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
        "_closer",
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
        ws: InlineServerConnection,
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
        #: The close of a flooding charge point, started from the read callback.
        self._closer: asyncio.Task[None] | None = None

    # -- reading ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Read the queued frames (those that had to wait, and what came after them) until the
        socket closes; the others are offered to :meth:`offer` as they arrive."""
        ws = self.ws
        ws.attach(self)
        try:
            async for raw in ws:
                if self._closer is None and not self._take_token():
                    self._flooded()
                if self._closer is not None:
                    break  # flooded: closing, nothing more is answered
                try:
                    await self._on_queued(raw)
                finally:
                    ws.message_read()
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else (closed.sent.code if closed.sent else None)
            if code == 1009:
                REJECTED_FRAMES.labels("oversized").inc()
                self.close_reason = self.close_reason or "frame larger than max_frame_bytes"
            self.close_reason = self.close_reason or f"connection closed ({code})"
        finally:
            if self._closer is not None:
                await self._closer
            if not self.close_reason:
                code = ws.close_code
                self.close_reason = f"closed by the charge point ({code})"
            if self._pending:
                for _action, future in self._pending.values():
                    if not future.done():
                        future.set_exception(ConnectionError("the charge point disconnected"))

    def offer(self, text: str) -> bool:
        """Handle a whole text frame on the read callback. False when its handler has to wait:
        the frame is then queued for :meth:`run` (and its rate token given back)."""
        if self._closer is not None:
            return True
        if not self._take_token():
            self._flooded()
            return True
        waiting = self._on_frame(text, time.perf_counter())
        if waiting is None:
            return True
        _call, answer = waiting
        if isinstance(answer, Coroutine):
            answer.close()  # not started: run() calls the handler again
        self._tokens += 1.0
        return False

    async def _on_queued(self, raw: str | bytes) -> None:
        started = time.perf_counter()
        if isinstance(raw, bytes):
            error = FrameError(ErrorKind.RPC_FRAMEWORK, "OCPP-J frames are text, not binary")
            self._reject(error.kind.value, error)
            return
        waiting = self._on_frame(raw, started)
        if waiting is None:
            return
        call, answer = waiting
        try:
            response = await answer
        except Exception as error:
            self._handler_failed(call, error)
            return
        self._answered(call, response, started)

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

    def _flooded(self) -> None:
        REJECTED_FRAMES.labels("rate_limit").inc()
        # The flooder's unread frames fill the receive queue, which pauses reading, so its close
        # reply may never be read: do not wait the full close timeout.
        self.ws.close_timeout = FLOOD_CLOSE_TIMEOUT_SECONDS
        self._closer = asyncio.get_running_loop().create_task(
            self.close(CLOSE_POLICY, "rate limit exceeded")
        )

    async def close(self, code: int, reason: str) -> None:
        self.close_reason = reason
        log.warning(
            "closing %s: %s",
            self.charge_point_id,
            reason,
            extra={"fields": {"charge_point_id": self.charge_point_id, "close_code": code}},
        )
        await self.ws.close(code, reason)

    def _on_frame(self, raw: str, started: float) -> tuple[ocppj.Call, Awaitable[Payload]] | None:
        """Handle one frame as far as it goes without waiting: what is left is a CALL whose
        handler has to wait, with the awaitable that will answer it."""
        try:
            frame = ocppj.parse(raw)
        except FrameError as error:
            self._reject(error.kind.value, error)
            return None
        if type(frame) is ocppj.Call:
            return self._on_call(frame, started)
        if type(frame) is ocppj.CallResult:
            self._on_result(frame.message_id, frame.payload, None)
        elif type(frame) is ocppj.CallError:
            received = CallErrorReceived(frame.code, frame.description, frame.details)
            self._on_result(frame.message_id, None, received)
        return None

    def _on_call(
        self, call: ocppj.Call, started: float
    ) -> tuple[ocppj.Call, Awaitable[Payload]] | None:
        action = call.action
        version = self.version
        handler = _HANDLERS[version].get(action)
        if handler is None:
            known = action in KNOWN_ACTIONS[version]
            kind = ErrorKind.NOT_SUPPORTED if known else ErrorKind.NOT_IMPLEMENTED
            why = "is not accepted from a charge point" if known else "is not an OCPP action"
            self._reject(
                "unknown_action", FrameError(kind, f"{action[:64]} {why}", call.message_id)
            )
            return None
        schemas = self.ctx.schemas
        try:
            schemas.check(version, action, Direction.REQUEST, call.payload)
            if action in schemas.relaxed:
                violation = schemas.violation(version, action, Direction.REQUEST, call.payload)
                if violation:
                    REJECTED_FRAMES.labels("schema_relaxed").inc()
                    log.info("relaxed %s from %s: %s", action, self.charge_point_id, violation)
            response = handler(self.ctx, self.charge_point_id, call.payload)
        except Exception as error:
            self._handler_failed(call, error)
            return None
        if not isinstance(response, dict):
            return call, response  # the handler has to wait
        self._answered(call, response, started)
        return None

    def _answered(self, call: ocppj.Call, response: Payload, started: float) -> None:
        self.ws.send_now(ocppj.result_frame(call.message_id, response))
        HANDLER_LATENCY(call.action).observe(time.perf_counter() - started)
        MESSAGES(call.action, "in").inc()

    def _handler_failed(self, call: ocppj.Call, error: Exception) -> None:
        if isinstance(error, FrameError):
            error.message_id = call.message_id
            unknown = isinstance(error, UnknownTransaction)
            self._reject("unknown_transaction" if unknown else "schema", error)
        elif isinstance(error, KeyError | TypeError | ValueError | ArithmeticError):
            # Only a relaxed (unchecked) payload can get here: it lacked what the handler needs.
            failure = FrameError(ErrorKind.FORMAT, f"{call.action}: unusable payload ({error!r})")
            failure.message_id = call.message_id
            self._reject("unusable_payload", failure)
        else:
            log.error("%s from %s failed", call.action, self.charge_point_id, exc_info=error)
            self._send_error(
                FrameError(ErrorKind.INTERNAL, "the gateway failed to handle it", call.message_id)
            )

    def _reject(self, reason: str, error: FrameError) -> None:
        """Count, log and answer a frame the gateway refuses."""
        REJECTED_FRAMES.labels(reason).inc()
        log.warning(
            "rejected frame from %s: %s",
            self.charge_point_id,
            error.description,
            extra={"fields": {"charge_point_id": self.charge_point_id, "reason": error.kind}},
        )
        self._send_error(error)

    def _send_error(self, error: FrameError) -> None:
        code = ocppj.error_code(self.version, error.kind)
        self.ws.send_now(ocppj.error_frame(error.message_id, code, error.description))

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
                await self.ws.send(ocppj.call_frame(message_id, action, payload), text=True)
                MESSAGES(action, "out").inc()
                return await future
            finally:
                self._pending.pop(message_id, None)
