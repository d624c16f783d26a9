"""OCPP-J framing: parse one WebSocket text frame into a CALL, CALLRESULT or CALLERROR.

The ``ocpp`` library's own ``unpack`` builds objects and validates in a thread pool; the gateway
parses the frame itself (one ``orjson.loads``, ~2.5 us less than ``json.loads`` a frame, and a
few type checks) because this runs for every message of every charge point. Frames are written
as UTF-8 bytes, which is what the socket sends. Error codes come from ``ocpp.exceptions`` so the
names match the library; the two protocol versions spell two of them differently, which
:func:`error_code` hides.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from ocpp import exceptions as ocpp_errors

CALL = 2
CALLRESULT = 3
CALLERROR = 4

#: The id to answer with when a frame's own message id could not be read (OCPP 2.0.1, 4.2.3).
UNKNOWN_MESSAGE_ID = "-1"
MAX_MESSAGE_ID_LENGTH = 36


class OcppVersion(StrEnum):
    V16 = "ocpp1.6"
    V201 = "ocpp2.0.1"

    @property
    def schema_dir(self) -> str:
        return "v16" if self is OcppVersion.V16 else "v201"


class ErrorKind(StrEnum):
    """What went wrong, independent of how each protocol version spells it."""

    FORMAT = "format"
    PROTOCOL = "protocol"
    RPC_FRAMEWORK = "rpc_framework"
    MESSAGE_TYPE = "message_type"
    NOT_IMPLEMENTED = "not_implemented"
    NOT_SUPPORTED = "not_supported"
    OCCURRENCE = "occurrence"
    PROPERTY = "property"
    TYPE = "type"
    INTERNAL = "internal"
    SECURITY = "security"
    GENERIC = "generic"


_V16_CODES: dict[ErrorKind, str] = {
    ErrorKind.FORMAT: ocpp_errors.FormationViolationError.code,
    ErrorKind.PROTOCOL: ocpp_errors.ProtocolError.code,
    # 1.6 has no RpcFrameworkError nor MessageTypeNotSupported: a broken frame is a ProtocolError.
    ErrorKind.RPC_FRAMEWORK: ocpp_errors.ProtocolError.code,
    ErrorKind.MESSAGE_TYPE: ocpp_errors.ProtocolError.code,
    ErrorKind.NOT_IMPLEMENTED: ocpp_errors.NotImplementedError.code,
    ErrorKind.NOT_SUPPORTED: ocpp_errors.NotSupportedError.code,
    ErrorKind.OCCURRENCE: ocpp_errors.OccurenceConstraintViolationError.code,
    ErrorKind.PROPERTY: ocpp_errors.PropertyConstraintViolationError.code,
    ErrorKind.TYPE: ocpp_errors.TypeConstraintViolationError.code,
    ErrorKind.INTERNAL: ocpp_errors.InternalError.code,
    ErrorKind.SECURITY: ocpp_errors.SecurityError.code,
    ErrorKind.GENERIC: ocpp_errors.GenericError.code,
}
_V201_CODES: dict[ErrorKind, str] = {
    **_V16_CODES,
    ErrorKind.FORMAT: ocpp_errors.FormatViolationError.code,
    ErrorKind.RPC_FRAMEWORK: "RpcFrameworkError",
    ErrorKind.MESSAGE_TYPE: "MessageTypeNotSupported",
    ErrorKind.OCCURRENCE: ocpp_errors.OccurrenceConstraintViolationError.code,
}


def error_code(version: OcppVersion, kind: ErrorKind) -> str:
    return (_V16_CODES if version is OcppVersion.V16 else _V201_CODES)[kind]


class FrameError(Exception):
    """A frame the gateway answers with a CALLERROR (``message_id`` is what it could read)."""

    def __init__(self, kind: ErrorKind, description: str, message_id: str = UNKNOWN_MESSAGE_ID):
        super().__init__(description)
        self.kind = kind
        self.description = description
        self.message_id = message_id


@dataclass(slots=True)
class Call:
    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(slots=True)
class CallResult:
    message_id: str
    payload: dict[str, Any]


@dataclass(slots=True)
class CallError:
    message_id: str
    code: str
    description: str
    details: dict[str, Any]


Frame = Call | CallResult | CallError


def parse(text: str | bytes) -> Frame:
    """Parse one OCPP-J frame or raise :class:`FrameError` saying why it is not one."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise FrameError(ErrorKind.FORMAT, f"frame is not valid JSON: {error}") from None
    if not isinstance(message, list) or not message:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "an OCPP-J frame is a JSON array")
    type_id = message[0]
    message_id = message[1] if len(message) > 1 else None
    if not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_MESSAGE_ID_LENGTH:
        raise FrameError(ErrorKind.RPC_FRAMEWORK, "the message id must be a string of 1-36 chars")
    if type_id == CALL:
        if len(message) != 4 or not isinstance(message[2], str):
            raise FrameError(
                ErrorKind.RPC_FRAMEWORK, "a CALL is [2, id, action, payload]", message_id
            )
        if not isinstance(message[3], dict):
            raise FrameError(ErrorKind.FORMAT, "a CALL payload is a JSON object", message_id)
        return Call(message_id, message[2], message[3])
    if type_id == CALLRESULT:
        if len(message) != 3 or not isinstance(message[2], dict):
            raise FrameError(
                ErrorKind.RPC_FRAMEWORK, "a CALLRESULT is [3, id, payload]", message_id
            )
        return CallResult(message_id, message[2])
    if type_id == CALLERROR:
        if len(message) != 5 or not isinstance(message[2], str) or not isinstance(message[4], dict):
            raise FrameError(
                ErrorKind.RPC_FRAMEWORK, "a CALLERROR is [4, id, code, text, details]", message_id
            )
        return CallError(message_id, message[2], str(message[3]), message[4])
    raise FrameError(ErrorKind.MESSAGE_TYPE, f"unknown message type id {type_id!r}", message_id)


def call_frame(message_id: str, action: str, payload: dict[str, Any]) -> bytes:
    return orjson.dumps([CALL, message_id, action, payload])


def result_frame(message_id: str, payload: dict[str, Any]) -> bytes:
    return orjson.dumps([CALLRESULT, message_id, payload])


def error_frame(
    message_id: str, code: str, description: str, details: dict[str, Any] | None = None
) -> bytes:
    return orjson.dumps([CALLERROR, message_id, code, description[:255], details or {}])
