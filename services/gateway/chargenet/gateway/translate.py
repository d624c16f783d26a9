"""Session commands in either OCPP version's words, sent in the words the charge point speaks.

The escrow starts and stops sessions without knowing a charge point's protocol version: a
``RemoteStartTransaction`` / ``RemoteStopTransaction`` (1.6) for a 2.0.1 charge point goes out as
``RequestStartTransaction`` / ``RequestStopTransaction`` with the mapped payload, and the other
way round. Every other action passes unchanged.
"""

from __future__ import annotations

import hashlib
from typing import Any

from chargenet.gateway.ocppj import OcppVersion

Payload = dict[str, Any]


class TranslationError(ValueError):
    """The command cannot be expressed in the charge point's version."""


def remote_start_id(command_id: str) -> int:
    """2.0.1 wants an integer the CSMS picks; one derived from the command id is the same on
    every replica and for a redelivered command."""
    return int.from_bytes(hashlib.sha256(command_id.encode()).digest()[:4], "big") & 0x7FFFFFFF


def translate(
    action: str, payload: Payload, version: OcppVersion, command_id: str
) -> tuple[str, Payload]:
    if version is OcppVersion.V201:
        if action == "RemoteStartTransaction":
            return "RequestStartTransaction", _start_201(payload, command_id)
        if action == "RemoteStopTransaction":
            return "RequestStopTransaction", {"transactionId": _text(payload, "transactionId")}
    else:
        if action == "RequestStartTransaction":
            return "RemoteStartTransaction", _start_16(payload)
        if action in ("RequestStopTransaction", "RemoteStopTransaction"):
            return "RemoteStopTransaction", {"transactionId": _integer(payload, "transactionId")}
    return action, payload


def _start_201(payload: Payload, command_id: str) -> Payload:
    id_tag = payload.get("idTag")
    if not isinstance(id_tag, str) or not id_tag:
        raise TranslationError("RemoteStartTransaction: idTag is required")
    mapped: Payload = {
        "idToken": {"idToken": id_tag, "type": "Central"},
        "remoteStartId": remote_start_id(command_id),
    }
    connector = payload.get("connectorId")
    if connector is not None:
        mapped["evseId"] = connector  # chargenet numbers one connector per EVSE
    return mapped


def _start_16(payload: Payload) -> Payload:
    token = payload.get("idToken")
    id_tag = token.get("idToken") if isinstance(token, dict) else None
    if not isinstance(id_tag, str) or not id_tag:
        raise TranslationError("RequestStartTransaction: idToken.idToken is required")
    mapped: Payload = {"idTag": id_tag}
    if payload.get("evseId") is not None:
        mapped["connectorId"] = payload["evseId"]
    return mapped


def _text(payload: Payload, field: str) -> str:
    value = payload.get(field)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TranslationError(f"{field} is required")
    return str(value)


def _integer(payload: Payload, field: str) -> int:
    value = payload.get(field)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise TranslationError(f"{field}: OCPP 1.6 transaction ids are integers, got {value!r}")
