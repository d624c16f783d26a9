"""What the 1.6J and 2.0.1 handlers answer alike; each version module maps its own payloads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from chargenet.gateway.authz import Grant
from chargenet.gateway.context import GatewayContext, now_text
from chargenet.gateway.events import ChargePointBooted, MeterReading
from chargenet.gateway.meter import Reading, whole
from chargenet.gateway.ocppj import ErrorKind, FrameError

Payload = dict[str, Any]
#: A handler answers at once, or returns an awaitable when it has to wait (an id token whose
#: escrow event is still on its way). Such an awaitable must not have done anything yet (a
#: coroutine): the connection drops it and runs the handler again on its reading task.
Handler = Callable[[GatewayContext, str, Payload], Payload | Awaitable[Payload]]


class UnknownTransaction(FrameError):
    """A transaction message the gateway cannot place. Answered with success it would be lost
    for good (the charge point never sends it again); a CALLERROR InternalError makes the charge
    point retry it (OCPP 1.6 §4.10; 2.0.1 likewise for TransactionEvent), until the table knows
    the transaction, or until its own attempts run out for one nothing stands behind."""

    def __init__(self, transaction_id: str) -> None:
        super().__init__(
            ErrorKind.INTERNAL, f"transaction {transaction_id[:64]} is not known (yet): retry"
        )


async def session_once_bound(ctx: GatewayContext, cp: str, transaction_id: str) -> Grant | None:
    """The grant of a transaction the table did not know, once it does; None if it is closed."""
    grant = await ctx.bound_grant(cp, transaction_id)
    if grant is None and not ctx.authz.closed(cp, transaction_id):
        raise UnknownTransaction(transaction_id)
    return grant


def accept_boot(
    ctx: GatewayContext,
    cp: str,
    *,
    ocpp_version: str,
    vendor: object,
    model: object,
    firmware_version: str | None,
) -> Payload:
    """Every authenticated charge point is accepted (the socket's credentials already checked it)
    and told how often to send a Heartbeat; the boot is published for operators."""
    ctx.emit(
        ChargePointBooted(
            cpo_id=ctx.cpo_id,
            charge_point_id=cp,
            ocpp_version=ocpp_version,
            vendor=str(vendor or ""),
            model=str(model or ""),
            firmware_version=firmware_version,
        ),
        cp,
    )
    return {
        "status": "Accepted",
        "currentTime": now_text(),
        "interval": ctx.settings.heartbeat_interval_seconds,
    }


def heartbeat(ctx: GatewayContext, cp: str, payload: Payload) -> Payload:
    return {"currentTime": now_text()}


def acknowledge(ctx: GatewayContext, cp: str, payload: Payload) -> Payload:
    """Notifications the CSMS only needs to confirm (firmware, diagnostics, security events)."""
    return {}


def emit_reading(
    ctx: GatewayContext,
    cp: str,
    grant: Grant,
    transaction_id: str,
    energy_wh: int,
    reading: Reading,
    taken_at: datetime,
) -> None:
    """A register reading of a session's transaction, its last signed value kept byte-exact;
    ``taken_at`` stands in when the sampled value has no time of its own."""
    ctx.emit(
        MeterReading(
            session_id=grant.session_id,
            charge_point_id=cp,
            transaction_id=transaction_id,
            energy_wh=energy_wh,
            power_w=whole(reading.power_w),
            measured_at=reading.time or taken_at,
            signed_data=reading.signed[-1] if reading.signed else None,
        ),
        grant.session_id,
    )
