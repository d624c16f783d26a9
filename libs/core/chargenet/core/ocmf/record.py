"""Parsing OCMF records (``OCMF|<payload JSON>|<signature JSON>``) without losing a byte.

The signature covers the payload exactly as the meter wrote it, so the record keeps the original
text next to the parsed view; nothing here re-serialises JSON. Reading values are parsed as
Decimals (never floats), so ``2935.6`` stays ``2935.6``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

HEADER = "OCMF"
DEFAULT_ALGORITHM = "ECDSA-secp256r1-SHA256"
#: TX values that end a transaction: E(nd), L(ocal), R(emote), A(bort), P(ower loss), S(uspended).
END_TYPES = frozenset("ELRAPS")

_PAGINATION = re.compile(r"^([TF])([0-9]+)$")
_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:,(\d{1,6}))?([+-]\d{4})(?: ([UISR]))?$"
)


class OcmfFormatError(ValueError):
    """The text is not a well-formed OCMF record; the message says what is wrong."""


@dataclass(frozen=True)
class Reading:
    time: datetime
    sync: str | None  # U(nknown), I(nformative), S(ynchronised), R(elative)
    type: str  # TX: B, C, X, E, L, R, A, P, S, T
    value: Decimal  # RV as written
    unit: str  # RU: kWh or Wh
    obis: str | None  # RI
    status: str | None  # ST: G(ood), T(ampered), D(eleted), ...

    @property
    def wh(self) -> Decimal:
        if self.unit == "kWh":
            return self.value * 1000
        if self.unit == "Wh":
            return self.value
        raise OcmfFormatError(f"reading unit {self.unit!r} is not an energy unit (kWh or Wh)")


@dataclass(frozen=True)
class OcmfRecord:
    text: str  # the whole record, byte-exact
    payload_text: str  # the signed bytes, exactly as received
    payload: dict[str, Any]
    signature: dict[str, Any]
    readings: tuple[Reading, ...]

    @property
    def signed_bytes(self) -> bytes:
        return self.payload_text.encode("utf-8")

    @property
    def pagination(self) -> tuple[str, int]:
        """(``T`` transaction / ``F`` fiscal, counter) from ``PG``."""
        value = self.payload.get("PG")
        match = _PAGINATION.match(value) if isinstance(value, str) else None
        if match is None:
            raise OcmfFormatError(f"PG {value!r} is not a pagination like T12 or F3")
        return match.group(1), int(match.group(2))

    @property
    def meter_serial(self) -> str | None:
        serial = self.payload.get("MS")
        return serial if isinstance(serial, str) else None

    @property
    def algorithm(self) -> str:
        return str(self.signature.get("SA", DEFAULT_ALGORITHM))


def parse(text: str) -> OcmfRecord:
    """Split and parse one record; raises :class:`OcmfFormatError` with the reason."""
    if not text.startswith(HEADER + "|"):
        raise OcmfFormatError("an OCMF record starts with 'OCMF|'")
    body = text[len(HEADER) + 1 :]
    if "|" not in body:
        raise OcmfFormatError("an OCMF record has three '|'-separated sections")
    # The signature section is JSON without '|', so the last '|' ends the payload even if a
    # payload string value contains one.
    payload_text, signature_text = body.rsplit("|", 1)
    payload = _object(payload_text, "payload")
    signature = _object(signature_text, "signature")
    if not isinstance(signature.get("SD"), str) or not signature["SD"]:
        raise OcmfFormatError("the signature section has no SD (signature data)")
    raw_readings = payload.get("RD")
    if not isinstance(raw_readings, list) or not raw_readings:
        raise OcmfFormatError("the payload has no readings (RD)")
    readings = tuple(_reading(index, item) for index, item in enumerate(raw_readings, 1))
    return OcmfRecord(text, payload_text, payload, signature, readings)


def _object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise OcmfFormatError(f"the {what} section is not JSON: {error.msg}") from None
    if not isinstance(value, dict):
        raise OcmfFormatError(f"the {what} section is not a JSON object")
    return value


def _reading(index: int, item: Any) -> Reading:
    if not isinstance(item, dict):
        raise OcmfFormatError(f"reading {index} is not an object")
    for key in ("TM", "TX", "RV", "RU"):
        if key not in item:
            raise OcmfFormatError(f"reading {index} has no {key}")
    value = item["RV"]
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise OcmfFormatError(f"reading {index}: RV is not a number")
    time, sync = _time(index, str(item["TM"]))
    return Reading(
        time=time,
        sync=sync,
        type=str(item["TX"]),
        value=Decimal(value),
        unit=str(item["RU"]),
        obis=item.get("RI"),
        status=item.get("ST"),
    )


def _time(index: int, text: str) -> tuple[datetime, str | None]:
    """OCMF time: ``2018-07-24T13:22:04,000+0200 S`` (comma fraction, offset, sync flag)."""
    match = _TIME.match(text)
    if match is None:
        raise OcmfFormatError(f"reading {index}: TM {text!r} is not an OCMF time")
    base, fraction, offset, sync = match.groups()
    micros = (fraction or "0").ljust(6, "0")
    moment = datetime.strptime(f"{base}.{micros}{offset}", "%Y-%m-%dT%H:%M:%S.%f%z")
    return moment, sync
