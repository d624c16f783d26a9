"""Verifying a session's signed meter values against the meter key registered for the station.

A session's OCMF data is one record holding the begin and end readings, or several records
(begin, intermediate, end) whose pagination counters run without gaps. Every check failure gives
a reason a person can act on; nothing here raises for bad meter data, because a failed
verification is a fact about the session (it gets flagged and its CDR says so), not a crash.

The signature is ECDSA over the payload bytes exactly as received (OCMF hashes the payload JSON
text, not a re-serialisation); the algorithms of the OCMF spec that ``cryptography`` provides are
accepted, secp256r1 being the default when ``SA`` is absent.
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chargenet.core.ocmf.record import END_TYPES, OcmfFormatError, OcmfRecord, Reading, parse

CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ECDSA-secp256r1-SHA256": ec.SECP256R1,
    "ECDSA-secp256k1-SHA256": ec.SECP256K1,
    "ECDSA-secp384r1-SHA256": ec.SECP384R1,
    "ECDSA-brainpool256r1-SHA256": ec.BrainpoolP256R1,
    "ECDSA-brainpool384r1-SHA256": ec.BrainpoolP384R1,
}


class MeterKeyError(ValueError):
    """The registered meter key cannot be read (a configuration problem, not a session's)."""


# Every settlement verifies with its station's key, and a station's sessions come again and again:
# a parse (the point decompressed and checked on its curve) is ~40 us, a cached key ~0.3 us.
@functools.lru_cache(maxsize=1024)
def load_public_key(key: str | bytes) -> ec.EllipticCurvePublicKey:
    """A meter's public key from PEM, or hex / raw DER SubjectPublicKeyInfo (OCMF's usual form)."""
    if isinstance(key, str):
        text = key.strip()
        if text.startswith("-----BEGIN"):
            der = None
            loaded = serialization.load_pem_public_key(text.encode())
        else:
            try:
                der = bytes.fromhex(text)
            except ValueError:
                raise MeterKeyError("the meter key is neither PEM nor hex DER") from None
    else:
        der = key
    if der is not None:
        try:
            loaded = serialization.load_der_public_key(der)
        except ValueError as error:
            raise MeterKeyError(f"the meter key is not a DER public key: {error}") from None
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise MeterKeyError("the meter key is not an elliptic-curve key")
    return loaded


def public_key_hex(key: ec.EllipticCurvePublicKey) -> str:
    """The key as hex DER SubjectPublicKeyInfo, the form OCMF transparency tools use."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der.hex().upper()


def signature_problem(record: OcmfRecord, key: ec.EllipticCurvePublicKey) -> str | None:
    """Why the record's signature does not verify under ``key``, or None when it does."""
    curve = CURVES.get(record.algorithm)
    if curve is None:
        return f"signature algorithm {record.algorithm!r} is not supported"
    if not isinstance(key.curve, curve):
        return (
            f"the record is signed with {record.algorithm} but the meter key is on {key.curve.name}"
        )
    mime = record.signature.get("SM", "application/x-der")
    if mime != "application/x-der":
        return f"signature format {mime!r} is not supported (only application/x-der)"
    try:
        signature = _decode(str(record.signature["SD"]), str(record.signature.get("SE", "hex")))
    except ValueError as error:
        return f"signature data cannot be decoded: {error}"
    try:
        key.verify(signature, record.signed_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "the signature does not verify against the registered meter key"
    return None


def _decode(data: str, encoding: str) -> bytes:
    if encoding == "hex":
        try:
            return bytes.fromhex(data)
        except ValueError:
            raise ValueError("SD is not hex") from None
    if encoding == "base64":
        try:
            return base64.b64decode(data, validate=True)
        except binascii.Error:
            raise ValueError("SD is not base64") from None
    raise ValueError(f"SE {encoding!r} is not hex or base64")


@dataclass(frozen=True)
class Verification:
    """The outcome for one session: ``ok`` or the first ``reason`` it failed."""

    ok: bool
    reason: str | None
    records: tuple[OcmfRecord, ...] = field(default=())

    @property
    def readings(self) -> tuple[Reading, ...]:
        return tuple(r for record in self.records for r in record.readings)

    @property
    def begin(self) -> Reading | None:
        return self.readings[0] if self.ok else None

    @property
    def end(self) -> Reading | None:
        return self.readings[-1] if self.ok else None

    @property
    def energy_wh(self) -> Decimal | None:
        """End minus begin register value, when the data verified."""
        if not self.ok or self.begin is None or self.end is None:
            return None
        return self.end.wh - self.begin.wh


def verify_session(
    records: Sequence[str],
    public_key: str | bytes | ec.EllipticCurvePublicKey,
    *,
    meter_serial: str | None = None,
) -> Verification:
    """Verify a session's OCMF records (in order) against the registered meter key."""
    key = public_key if isinstance(public_key, ec.EllipticCurvePublicKey) else None
    if key is None:
        key = load_public_key(public_key)
    if not records:
        return Verification(False, "no signed meter values")
    parsed: list[OcmfRecord] = []
    for number, text in enumerate(records, 1):
        try:
            parsed.append(parse(text))
        except OcmfFormatError as error:
            return Verification(False, f"record {number}: {error}")
    problem = _first_problem(parsed, key, meter_serial)
    return Verification(problem is None, problem, tuple(parsed))


def _first_problem(
    records: list[OcmfRecord], key: ec.EllipticCurvePublicKey, meter_serial: str | None
) -> str | None:
    for number, record in enumerate(records, 1):
        problem = signature_problem(record, key)
        if problem is not None:
            return f"record {number}: {problem}"
    serials = {record.meter_serial for record in records}
    if len(serials) != 1:
        return "the records come from different meters (MS differs)"
    if meter_serial is not None and serials != {meter_serial}:
        return f"the records come from meter {serials.pop()!r}, not the registered {meter_serial!r}"
    return _pagination_problem(records) or _readings_problem(records)


def _pagination_problem(records: list[OcmfRecord]) -> str | None:
    try:
        pages = [record.pagination for record in records]
    except OcmfFormatError as error:
        return str(error)
    if len({kind for kind, _ in pages}) != 1:
        return "the records mix transaction (T) and fiscal (F) pagination"
    for (kind, before), (_, after) in itertools.pairwise(pages):
        if after != before + 1:
            return f"pagination gap: {kind}{after} follows {kind}{before}"
    return None


def _readings_problem(records: list[OcmfRecord]) -> str | None:
    readings = [r for record in records for r in record.readings]
    if readings[0].type != "B":
        return f"missing begin reading: the first reading is TX={readings[0].type}"
    if readings[-1].type not in END_TYPES:
        return f"missing end reading: the last reading is TX={readings[-1].type}"
    for number, reading in enumerate(readings, 1):
        if number > 1 and reading.type == "B":
            return f"reading {number}: a second begin reading"
        if number < len(readings) and reading.type in END_TYPES:
            return f"reading {number}: an end reading before the last reading"
        if reading.status not in (None, "G"):
            return f"reading {number}: meter status {reading.status!r} is not G (good)"
    try:
        values = [r.wh for r in readings]
    except OcmfFormatError as error:
        return str(error)
    for number, (before, after) in enumerate(itertools.pairwise(readings), 2):
        if after.time < before.time:
            return f"reading {number}: earlier than the reading before it"
        if values[number - 1] < values[number - 2]:
            return f"reading {number}: the energy register went backwards"
    return None
