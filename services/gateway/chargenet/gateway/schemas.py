"""Payload validation against the JSON schemas the ``ocpp`` package ships, compiled once.

``fastjsonschema`` turns each schema into Python code on first use (about 8 microseconds per
MeterValues check afterwards, against ~100 for ``jsonschema`` in a thread pool). A per-action relax
switch lets known non-conformant firmware through: its violations are logged and counted, not
refused.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any

import fastjsonschema
import ocpp
from ocpp.v16.enums import Action as Action16
from ocpp.v201.enums import Action as Action201

from chargenet.gateway.ocppj import ErrorKind, FrameError, OcppVersion

Validator = Callable[[Any], Any]

_SCHEMA_ROOT = Path(ocpp.__file__).parent

#: Every action each version defines; anything else never reaches the file system.
KNOWN_ACTIONS: dict[OcppVersion, frozenset[str]] = {
    OcppVersion.V16: frozenset(action.value for action in Action16),
    OcppVersion.V201: frozenset(action.value for action in Action201),
}

#: fastjsonschema's failing keyword -> the OCPP error that names it.
_RULE_KINDS: dict[str, ErrorKind] = {
    "required": ErrorKind.OCCURRENCE,
    "minItems": ErrorKind.OCCURRENCE,
    "maxItems": ErrorKind.OCCURRENCE,
    "type": ErrorKind.TYPE,
    "additionalProperties": ErrorKind.FORMAT,
}


class Direction(StrEnum):
    REQUEST = "request"
    RESPONSE = "response"


def schema_path(version: OcppVersion, action: str, direction: Direction) -> Path:
    if version is OcppVersion.V16:
        name = action + ("Response" if direction is Direction.RESPONSE else "")
    else:
        name = action + ("Response" if direction is Direction.RESPONSE else "Request")
    return _SCHEMA_ROOT / version.schema_dir / "schemas" / f"{name}.json"


class SchemaRegistry:
    """Compiled validators by (version, action, direction); thread-safe, compiled lazily."""

    def __init__(self, relaxed_actions: Iterable[str] = ()) -> None:
        self.relaxed = frozenset(relaxed_actions)
        self._validators: dict[tuple[OcppVersion, str, Direction], Validator | None] = {}
        self._lock = threading.Lock()

    def knows(self, version: OcppVersion, action: str) -> bool:
        return self._validator(version, action, Direction.REQUEST) is not None

    def _validator(
        self, version: OcppVersion, action: str, direction: Direction
    ) -> Validator | None:
        if action not in KNOWN_ACTIONS[version]:
            return None
        key = (version, action, direction)
        try:
            return self._validators[key]
        except KeyError:
            pass
        with self._lock:
            if key not in self._validators:
                self._validators[key] = _compile(schema_path(version, action, direction))
            return self._validators[key]

    def check(
        self, version: OcppVersion, action: str, direction: Direction, payload: dict[str, Any]
    ) -> None:
        """Raise :class:`FrameError` if ``payload`` breaks the action's schema.

        Returns quietly for relaxed actions; the caller asks :meth:`violation` to log them.
        """
        validator = self._validator(version, action, direction)
        if validator is None:
            raise FrameError(ErrorKind.NOT_IMPLEMENTED, f"unknown action {action}")
        try:
            validator(payload)
        except fastjsonschema.JsonSchemaValueException as error:
            if action in self.relaxed:
                return
            kind = _RULE_KINDS.get(error.rule or "", ErrorKind.PROPERTY)
            raise FrameError(kind, f"{action}: {error.message}") from None

    def violation(
        self, version: OcppVersion, action: str, direction: Direction, payload: dict[str, Any]
    ) -> str | None:
        """The schema violation of ``payload`` (for logging relaxed actions), or None."""
        validator = self._validator(version, action, direction)
        if validator is None:
            return f"unknown action {action}"
        try:
            validator(payload)
        except fastjsonschema.JsonSchemaValueException as error:
            return str(error.message)
        return None


def _compile(path: Path) -> Validator | None:
    if not path.is_file():
        return None
    # The 2.0.1 schemas begin with a byte order mark.
    schema = json.loads(path.read_text(encoding="utf-8-sig"))
    validator: Validator = fastjsonschema.compile(schema)
    return validator
