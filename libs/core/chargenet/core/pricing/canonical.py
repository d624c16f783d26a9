"""Canonical JSON and its keccak-256: the CDR hash that goes on chain at settlement.

The canonical form (chargenet's choice; anyone can reproduce it in a few lines):

- UTF-8, no whitespace at all (separators ``,`` and ``:``), object keys sorted by code point,
  non-ASCII characters written as themselves (no ``\\u`` escapes except those JSON requires).
- Members whose value is ``null`` are omitted, so an absent optional field and a null one hash
  the same.
- Decimals are JSON *numbers* in plain notation: no exponent, no trailing fractional zeros, no
  ``+`` sign, ``-0`` written ``0`` (``4.40`` -> ``4.4``, ``1E+1`` -> ``10``). A verifier must parse
  numbers as decimals, never as binary floats. Integers are integers, booleans ``true`` /
  ``false``.
- Date-times are UTC in ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``, the fraction only when non-zero and
  without trailing zeros.

The hash is ``keccak256(canonical_bytes)`` (Ethereum's keccak, not NIST SHA3-256).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from json.encoder import encode_basestring
from typing import Any

from eth_utils.crypto import keccak
from pydantic import BaseModel

from chargenet.core.pricing.money import plain


def canonical_json(document: BaseModel | Mapping[str, Any]) -> bytes:
    """The canonical bytes of a model (dumped in python mode) or of a plain mapping."""
    value = document.model_dump(mode="python") if isinstance(document, BaseModel) else document
    return _canonical(value).encode()


def canonical_hash(document: BaseModel | Mapping[str, Any]) -> bytes:
    """keccak-256 of :func:`canonical_json` (32 bytes)."""
    digest: bytes = keccak(canonical_json(document))
    return digest


def tariff_hash(document: Mapping[str, Any]) -> bytes:
    """The hash a station registers for its tariff: of the OCPI document as its CPO wrote it
    (the registry's form), numbers as exact decimals; a float read from JSON counts by its
    shortest text (0.35, never 0.34999...), as ``json.loads(..., parse_float=Decimal)`` reads it.
    """
    return canonical_hash(_exact(document))


def _exact(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {key: _exact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(item) for item in value]
    return value


def dumps(value: Any, *, indent: int | None = 2) -> str:
    """Readable JSON for people and CLIs: Decimals as numbers with the digits they carry (an
    amount rounded to cents prints ``3.10``), keys in their order, nulls kept."""
    return _encode(value, indent=indent, level=0, canonical=False)


def format_datetime(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive date-time: a canonical date-time needs a time zone")
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def _encode(value: Any, *, indent: int | None, level: int, canonical: bool) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return _encode(value.value, indent=indent, level=level, canonical=canonical)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a JSON number")
        # canonical: one spelling per number; readable: as written, so 3.10 EUR shows its cents
        return plain(value) if canonical else _as_written(value)
    if isinstance(value, float):
        raise TypeError("floats are not exact: convert to Decimal before encoding")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime):
        return json.dumps(format_datetime(value))
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
        if canonical:  # nulls omitted, keys sorted
            items = sorted((k, v) for k, v in items if v is not None)
        encoded = [
            json.dumps(k, ensure_ascii=False)
            + (": " if indent is not None else ":")
            + _encode(v, indent=indent, level=level + 1, canonical=canonical)
            for k, v in items
        ]
        return _wrap("{", "}", encoded, indent, level)
    if isinstance(value, Sequence):
        encoded = [_encode(v, indent=indent, level=level + 1, canonical=canonical) for v in value]
        return _wrap("[", "]", encoded, indent, level)
    raise TypeError(f"cannot encode {type(value).__name__} as canonical JSON")


def _canonical(value: Any) -> str:
    """``_encode(value, canonical=True)``, quicker for the types a dumped model is made of (every
    settlement hashes its CDR: some 160 values, 0.6 ms through ``_encode``). A type it does not
    know here (an enum, another mapping or sequence) goes the general way."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is dict:
        items = sorted((str(k), v) for k, v in value.items() if v is not None)
        return "{" + ",".join(encode_basestring(k) + ":" + _canonical(v) for k, v in items) + "}"
    if kind is list:
        return "[" + ",".join([_canonical(v) for v in value]) + "]"
    if kind is int:
        return str(value)
    if kind is Decimal and value.is_finite():
        return plain(value)
    if kind is datetime:
        return encode_basestring(format_datetime(value))
    if isinstance(value, Enum):
        return _canonical(value.value)
    return _encode(value, indent=None, level=0, canonical=True)


def _as_written(value: Decimal) -> str:
    """Plain notation keeping the value's own decimals (``Decimal("3.10")`` -> ``3.10``)."""
    if value == 0:
        value = abs(value)  # no "-0.00"
    exponent = value.as_tuple().exponent  # positive for 1E+1: plain() writes 10
    return format(value, "f") if isinstance(exponent, int) and exponent <= 0 else plain(value)


def _wrap(open_: str, close: str, items: list[str], indent: int | None, level: int) -> str:
    if indent is None:
        return open_ + ",".join(items) + close
    if not items:
        return open_ + close
    inner = "\n" + " " * (indent * (level + 1))
    return open_ + inner + ("," + inner).join(items) + "\n" + " " * (indent * level) + close
