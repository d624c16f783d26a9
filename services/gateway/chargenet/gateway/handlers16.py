"""OCPP 1.6J: what the gateway answers to each CALL from a charge point, and what it publishes.

Each handler answers at once, unless an id token or a transaction it names may still be on its
way over the bus (then after a short grace); events are handed to the bus without waiting for it.
Payloads have passed the schema check (unless the action is relaxed, hence the defensive
``.get``s).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from ocpp.v16.enums import Action, AuthorizationStatus, DataTransferStatus

from chargenet.gateway.authz import Decision, Grant, Verdict
from chargenet.gateway.context import GatewayContext
from chargenet.gateway.events import (
    ConnectorStatusChanged,
    SessionStarted,
    SessionStopped,
)
from chargenet.gateway.handlers_common import (
    Handler,
    Payload,
    accept_boot,
    acknowledge,
    emit_reading,
    heartbeat,
    session_once_bound,
)
from chargenet.gateway.meter import Reading, parse_time, read_v16, read_v16_each, whole
from chargenet.gateway.metrics import UNREAD_SIGNED_READINGS

log = logging.getLogger(__name__)

#: The transaction id of a refused start (1.6 requires one): it never names a session.
_REFUSED = 0

_STATUS = {
    Verdict.ACCEPTED: AuthorizationStatus.accepted,
    Verdict.UNKNOWN: AuthorizationStatus.invalid,
    Verdict.ELSEWHERE: AuthorizationStatus.invalid,
    Verdict.EXPIRED: AuthorizationStatus.expired,
    Verdict.CONCURRENT: AuthorizationStatus.concurrent_tx,
}


def transaction_id_for(session_id: str) -> int:
    """1.6 wants an integer the CSMS picks. Deriving it from the session id makes it the same on
    every replica and for a retried StartTransaction, with no shared counter."""
    return int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:4], "big") & 0x7FFFFFFF or 1


def boot_notification(ctx: GatewayContext, cp: str, payload: Payload) -> Payload:
    return accept_boot(
        ctx,
        cp,
        ocpp_version="1.6",
        vendor=payload.get("chargePointVendor"),
        model=payload.get("chargePointModel"),
        firmware_version=payload.get("firmwareVersion"),
    )


def status_notification(ctx: GatewayContext, cp: str, payload: Payload) -> Payload:
    error = payload.get("errorCode")
    ctx.emit(
        ConnectorStatusChanged(
            cpo_id=ctx.cpo_id,
            charge_point_id=cp,
            connector_id=int(payload["connectorId"]),
            status=str(payload["status"]),
            error_code=None if error in (None, "NoError") else str(error),
            reported_at=parse_time(payload.get("timestamp")),
        ),
        cp,
    )
    return {}


async def authorize(ctx: GatewayContext, cp: str, payload: Payload) -> Payload:
    decision = await ctx.decide(cp, str(payload["idTag"]))
    return {"idTagInfo": {"status": _STATUS[decision.verdict]}}


def _retried_start(decision: Decision) -> bool:
    grant = decision.grant
    return (
        decision.verdict is Verdict.CONCURRENT
        and grant is not None
        and grant.transaction_id == str(transaction_id_for(grant.session_id))
    )


async def start_transaction(ctx: GatewayContext, cp: str, payload: Payload) -> Payload:
    id_tag = str(payload["idTag"])
    connector = int(payload["connectorId"])
    decision = await ctx.decide(cp, id_tag, connector_id=connector)
    grant = decision.grant
    if grant is None or not (decision.verdict is Verdict.ACCEPTED or _retried_start(decision)):
        return {"transactionId": _REFUSED, "idTagInfo": {"status": _STATUS[decision.verdict]}}
    transaction_id = transaction_id_for(grant.session_id)
    if grant.transaction_id is None:
        ctx.authz.bind(grant.session_id, str(transaction_id), int(payload["meterStart"]))
        ctx.emit(
            SessionStarted(
                session_id=grant.session_id,
                charge_point_id=cp,
                connector_id=connector,
                transaction_id=str(transaction_id),
                meter_start_wh=int(payload["meterStart"]),
                started_at=parse_time(payload.get("timestamp")),
            ),
            grant.session_id,
        )
    return {"transactionId": transaction_id, "idTagInfo": {"status": AuthorizationStatus.accepted}}


def stop_transaction(
    ctx: GatewayContext, cp: str, payload: Payload
) -> Payload | Awaitable[Payload]:
    transaction_id = str(payload["transactionId"])
    grant = ctx.authz.by_transaction(cp, transaction_id)
    if grant is None and not _placed(ctx, cp, transaction_id):
        return _stop_once_bound(ctx, cp, payload, transaction_id)
    return _stop(ctx, cp, payload, grant, transaction_id)


def _placed(ctx: GatewayContext, cp: str, transaction_id: str) -> bool:
    """Whether a transaction without a grant is known to have none: nothing to wait for."""
    return transaction_id == str(_REFUSED) or ctx.authz.closed(cp, transaction_id)


async def _stop_once_bound(
    ctx: GatewayContext, cp: str, payload: Payload, transaction_id: str
) -> Payload:
    grant = await session_once_bound(ctx, cp, transaction_id)
    return _stop(ctx, cp, payload, grant, transaction_id)


def _stop(
    ctx: GatewayContext, cp: str, payload: Payload, grant: Grant | None, transaction_id: str
) -> Payload:
    if grant is None:
        log.info("%s: stop of transaction %s, which has no open session", cp, transaction_id)
    else:
        reading = read_v16(payload.get("transactionData") or [])
        ctx.emit(
            SessionStopped(
                session_id=grant.session_id,
                charge_point_id=cp,
                transaction_id=transaction_id,
                meter_stop_wh=int(payload["meterStop"]),
                reason=str(payload.get("reason", "Local")),
                signed_data=reading.signed,
                stopped_at=parse_time(payload.get("timestamp")),
            ),
            grant.session_id,
        )
        # Withdraw here at once: the same token must not start again before the bus echoes it.
        ctx.authz.withdraw(grant.session_id)
    if "idTag" in payload:
        return {"idTagInfo": {"status": AuthorizationStatus.accepted}}
    return {}


def meter_values(ctx: GatewayContext, cp: str, payload: Payload) -> Payload | Awaitable[Payload]:
    transaction = payload.get("transactionId")
    if transaction is None:
        return {}
    transaction_id = str(transaction)
    readings = _register_readings(cp, transaction_id, payload.get("meterValue") or [])
    if not readings:
        return {}
    grant = ctx.authz.by_transaction(cp, transaction_id)
    if grant is None:
        if _placed(ctx, cp, transaction_id):
            return {}
        return _meter_once_bound(ctx, cp, transaction_id, readings)
    _emit_readings(ctx, cp, grant, transaction_id, readings)
    return {}


def _register_readings(
    cp: str, transaction_id: str, meter_values: list[dict[str, Any]]
) -> list[tuple[int, Reading]]:
    """Each moment's reading with its energy. Only register readings are billed against (not,
    e.g., diagnostics alone); a signed value left out is logged and counted, as it may be a
    session's signed begin or end, which the escrow then misses."""
    readings = []
    for reading in read_v16_each(meter_values):
        energy = whole(reading.energy_wh)
        if energy is not None:
            readings.append((energy, reading))
        elif reading.signed:
            UNREAD_SIGNED_READINGS.inc()
            log.warning(
                "%s: signed reading of transaction %s has no energy (%s): left out",
                cp,
                transaction_id,
                reading.signed_problem,
            )
    return readings


def _emit_readings(
    ctx: GatewayContext,
    cp: str,
    grant: Grant,
    transaction_id: str,
    readings: list[tuple[int, Reading]],
) -> None:
    now = datetime.now(UTC)
    for energy_wh, reading in readings:
        emit_reading(ctx, cp, grant, transaction_id, energy_wh, reading, now)


async def _meter_once_bound(
    ctx: GatewayContext, cp: str, transaction_id: str, readings: list[tuple[int, Reading]]
) -> Payload:
    grant = await session_once_bound(ctx, cp, transaction_id)
    if grant is not None:
        _emit_readings(ctx, cp, grant, transaction_id, readings)
    return {}


def data_transfer(ctx: GatewayContext, cp: str, payload: Payload) -> Payload:
    # No vendor extensions are configured for any CPO yet; the spec's answer for that is this.
    return {"status": DataTransferStatus.unknown_vendor_id}


HANDLERS: dict[str, Handler] = {
    Action.boot_notification: boot_notification,
    Action.heartbeat: heartbeat,
    Action.status_notification: status_notification,
    Action.authorize: authorize,
    Action.start_transaction: start_transaction,
    Action.stop_transaction: stop_transaction,
    Action.meter_values: meter_values,
    Action.data_transfer: data_transfer,
    Action.diagnostics_status_notification: acknowledge,
    Action.firmware_status_notification: acknowledge,
}
