"""OCPP 2.0.1: answers to a charge point's CALLs, and the events they publish.

2.0.1 has no StartTransaction: the charge point names the transaction and reports it through
TransactionEvent (Started / Updated / Ended). The id token may come with any of them (a cable can
be plugged in before the driver is known), so the first event carrying a token is where the gateway
binds the transaction to an escrow session or refuses it. The session's meter start is the
transaction's first register reading, whichever event carried it (see ``transactions``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

from ocpp.v201.enums import (
    Action,
    AuthorizationStatusEnumType,
    DataTransferStatusEnumType,
    TransactionEventEnumType,
)

from chargenet.gateway.authz import Grant, Verdict
from chargenet.gateway.context import GatewayContext
from chargenet.gateway.events import (
    ConnectorStatusChanged,
    SessionStarted,
    SessionStopped,
)
from chargenet.gateway.handlers_common import (
    Handler,
    Payload,
    UnknownTransaction,
    accept_boot,
    acknowledge,
    emit_reading,
    heartbeat,
)
from chargenet.gateway.meter import Reading, parse_time, read_v201, whole
from chargenet.gateway.transactions import PendingStart

log = logging.getLogger(__name__)

_STATUS = {
    Verdict.ACCEPTED: AuthorizationStatusEnumType.accepted,
    Verdict.UNKNOWN: AuthorizationStatusEnumType.unknown,
    Verdict.ELSEWHERE: AuthorizationStatusEnumType.not_at_this_location,
    Verdict.EXPIRED: AuthorizationStatusEnumType.expired,
    Verdict.CONCURRENT: AuthorizationStatusEnumType.concurrent_tx,
}


def boot_notification(ctx: GatewayContext, cp: str, payload: Payload) -> Payload:
    station: dict[str, Any] = payload.get("chargingStation") or {}
    return accept_boot(
        ctx,
        cp,
        ocpp_version="2.0.1",
        vendor=station.get("vendorName"),
        model=station.get("model"),
        firmware_version=station.get("firmwareVersion"),
    )


def status_notification(ctx: GatewayContext, cp: str, payload: Payload) -> Payload:
    ctx.emit(
        ConnectorStatusChanged(
            cpo_id=ctx.cpo_id,
            charge_point_id=cp,
            evse_id=int(payload["evseId"]),
            connector_id=int(payload["connectorId"]),
            status=str(payload["connectorStatus"]),
            reported_at=parse_time(payload.get("timestamp")),
        ),
        cp,
    )
    return {}


async def authorize(ctx: GatewayContext, cp: str, payload: Payload) -> Payload:
    decision = await ctx.decide(cp, str(payload["idToken"]["idToken"]))
    return {"idTokenInfo": {"status": _STATUS[decision.verdict]}}


def transaction_event(
    ctx: GatewayContext, cp: str, payload: Payload
) -> Payload | Awaitable[Payload]:
    transaction_id = str(payload["transactionInfo"]["transactionId"])
    grant = ctx.authz.by_transaction(cp, transaction_id)
    if grant is not None:
        return _with_session(ctx, cp, payload, grant, transaction_id)
    if _closed(ctx, cp, payload, transaction_id):
        return _after_close(ctx, cp, payload, transaction_id)
    if not _placed(ctx, cp, payload, transaction_id):
        return _once_placed(ctx, cp, payload, transaction_id)
    return _no_session(ctx, cp, payload, transaction_id)


def _with_session(
    ctx: GatewayContext, cp: str, payload: Payload, grant: Grant, transaction_id: str
) -> Payload:
    _report(ctx, cp, payload, grant, transaction_id, read_v201(payload.get("meterValue") or []))
    return _bound_answer(payload)


def _bound_answer(payload: Payload) -> Payload:
    """The answer to an event of a transaction bound to a session: its token was decided when
    the transaction was bound."""
    if isinstance(payload.get("idToken"), dict):
        return {"idTokenInfo": {"status": AuthorizationStatusEnumType.accepted}}
    return {}


def _closed(ctx: GatewayContext, cp: str, payload: Payload, transaction_id: str) -> bool:
    """An Updated or Ended of a transaction whose session closed: a repeat whose answer was lost,
    or one the escrow closed first."""
    return payload["eventType"] != TransactionEventEnumType.started and ctx.authz.closed(
        cp, transaction_id
    )


def _after_close(ctx: GatewayContext, cp: str, payload: Payload, transaction_id: str) -> Payload:
    """Answered as while its session was open, and its token not decided again: that would bind
    the token's next lock at this charge point (the driver's next session) to a transaction that
    is over, and an Ended would end that session there."""
    _without_session(ctx, cp, payload, transaction_id)
    return _bound_answer(payload)


def _placed(ctx: GatewayContext, cp: str, payload: Payload, transaction_id: str) -> bool:
    """Whether this replica knows, without waiting, that no session stands behind the
    transaction: it begins with this event, or it began here without one."""
    return (
        payload["eventType"] == TransactionEventEnumType.started
        or (cp, transaction_id) in ctx.waiting
    )


async def _once_placed(
    ctx: GatewayContext, cp: str, payload: Payload, transaction_id: str
) -> Payload:
    """An Updated or Ended of a transaction this replica has not seen begin: after a restart
    (the table's replay) or from another replica's charge point, its start may be on its way."""
    grant = await ctx.bound_grant(cp, transaction_id)
    if grant is not None:
        return _with_session(ctx, cp, payload, grant, transaction_id)
    if _closed(ctx, cp, payload, transaction_id):
        return _after_close(ctx, cp, payload, transaction_id)
    if payload["eventType"] == TransactionEventEnumType.ended:
        raise UnknownTransaction(transaction_id)  # its final reading would be lost
    token = payload.get("idToken")
    if isinstance(token, dict):
        return await _first_with_token(ctx, cp, payload, transaction_id, token)
    # Not refused: a cable plugged in before the token (on another replica, or before a restart)
    # sends these too, and the station would retry each before its next message, the token's.
    # A later reading covers the energy of this one.
    log.info(
        "%s: reading of transaction %s, which has no session (yet), left out", cp, transaction_id
    )
    return {}


def _no_session(
    ctx: GatewayContext, cp: str, payload: Payload, transaction_id: str
) -> Payload | Awaitable[Payload]:
    token = payload.get("idToken")
    if isinstance(token, dict):
        # The first event with a token decides the transaction: it may have to wait.
        return _first_with_token(ctx, cp, payload, transaction_id, token)
    _without_session(ctx, cp, payload, transaction_id)
    return {}


def _without_session(ctx: GatewayContext, cp: str, payload: Payload, transaction_id: str) -> None:
    """An event of a transaction no session stands behind: not yet (the cable came first: its
    first reading may become the meter start), or no more."""
    waiting = ctx.waiting
    energy_wh = whole(read_v201(payload.get("meterValue") or []).energy_wh)
    if payload["eventType"] == TransactionEventEnumType.ended:
        waiting.ended(cp, transaction_id)
    elif energy_wh is not None and (late := waiting.start_now(cp, transaction_id)) is not None:
        # Its lock went (the escrow's start deadline passed) while the start waited for this
        # reading: the escrow stops a transaction that starts after it gave up on it.
        _publish_start(ctx, cp, transaction_id, late, energy_wh)
    elif not ctx.authz.closed(cp, transaction_id):
        waiting.seen(cp, transaction_id, energy_wh)


async def _first_with_token(
    ctx: GatewayContext, cp: str, payload: Payload, transaction_id: str, token: Payload
) -> Payload:
    id_token = str(token.get("idToken", ""))
    # chargenet's connector is the EVSE (commands send it as evseId, see translate.py); 2.0.1's
    # connectorId counts within one EVSE, so it is 1 on almost every EVSE and names nothing here.
    connector = int((payload.get("evse") or {}).get("id") or 0)
    decision = await ctx.decide(
        cp, id_token, transaction_id=transaction_id, connector_id=connector or None
    )
    answer: Payload = {"idTokenInfo": {"status": _STATUS[decision.verdict]}}
    grant = decision.grant
    if decision.verdict is not Verdict.ACCEPTED or grant is None:
        # Known here without a session, as if it had no token: its end is not retried, and
        # another token may still bind it.
        _without_session(ctx, cp, payload, transaction_id)
        return answer
    reading = read_v201(payload.get("meterValue") or [])
    # A reading from before the token (the cable first) is the transaction's first.
    first = ctx.waiting.first_reading(cp, transaction_id)
    meter_start = whole(reading.energy_wh) if first is None else first
    ctx.authz.bind(grant.session_id, transaction_id, meter_start)
    start = PendingStart(grant.session_id, connector, parse_time(payload.get("timestamp")))
    if meter_start is None:
        # The escrow prices a session from its meter start (its first sample): a made-up 0 would
        # bill the register's whole life, up to the locked maximum. The session starts at the
        # transaction's first reading instead, dated at the token: the energy before that
        # reading is unknown and not billed, the time since the token is.
        ctx.waiting.start_later(cp, transaction_id, start)
    else:
        _publish_start(ctx, cp, transaction_id, start, meter_start)
    _report(ctx, cp, payload, grant, transaction_id, reading)
    return answer


def _publish_start(
    ctx: GatewayContext, cp: str, transaction_id: str, start: PendingStart, meter_start_wh: int
) -> None:
    ctx.emit(
        SessionStarted(
            session_id=start.session_id,
            charge_point_id=cp,
            connector_id=start.connector_id,
            transaction_id=transaction_id,
            meter_start_wh=meter_start_wh,
            started_at=start.started_at,
        ),
        start.session_id,
    )


def _report(
    ctx: GatewayContext,
    cp: str,
    payload: Payload,
    grant: Grant,
    transaction_id: str,
    reading: Reading,
) -> None:
    """What a transaction's event says once its session is known: a reading, or its end."""
    at = parse_time(payload.get("timestamp"))
    energy = whole(reading.energy_wh)
    if energy is not None:
        grant.last_energy_wh = energy
        if (start := ctx.waiting.start_now(cp, transaction_id)) is not None:
            _publish_start(ctx, cp, transaction_id, start, energy)
    if payload["eventType"] == TransactionEventEnumType.ended:
        _end(ctx, cp, payload, grant, transaction_id, reading, at)
    elif energy is not None:
        emit_reading(ctx, cp, grant, transaction_id, energy, reading, at)


def _end(
    ctx: GatewayContext,
    cp: str,
    payload: Payload,
    grant: Grant,
    transaction_id: str,
    reading: Reading,
    at: datetime,
) -> None:
    # Withdrawn at once: the same token must not start again before the bus echoes the stop.
    ctx.authz.withdraw(grant.session_id)
    ctx.waiting.ended(cp, transaction_id)
    if grant.last_energy_wh is None:
        log.warning(
            "%s: transaction %s of session %s ended without any register reading: "
            "nothing to bill, its session never started",
            cp,
            transaction_id,
            grant.session_id,
        )
        return
    ctx.emit(
        SessionStopped(
            session_id=grant.session_id,
            charge_point_id=cp,
            transaction_id=transaction_id,
            # 2.0.1 may end without a final reading: the last one seen stands.
            meter_stop_wh=grant.last_energy_wh,
            reason=str(payload["transactionInfo"].get("stoppedReason", "Local")),
            signed_data=reading.signed,
            stopped_at=at,
        ),
        grant.session_id,
    )


def meter_values(ctx: GatewayContext, cp: str, payload: Payload) -> Payload:
    # 2.0.1 MeterValues carry no transaction id (those travel in TransactionEvent): nothing to bill.
    return {}


def data_transfer(ctx: GatewayContext, cp: str, payload: Payload) -> Payload:
    return {"status": DataTransferStatusEnumType.unknown_vendor_id}


HANDLERS: dict[str, Handler] = {
    Action.boot_notification: boot_notification,
    Action.heartbeat: heartbeat,
    Action.status_notification: status_notification,
    Action.authorize: authorize,
    Action.transaction_event: transaction_event,
    Action.meter_values: meter_values,
    Action.data_transfer: data_transfer,
    Action.notify_event: acknowledge,
    Action.notify_report: acknowledge,
    Action.firmware_status_notification: acknowledge,
    Action.log_status_notification: acknowledge,
    Action.security_event_notification: acknowledge,
}
