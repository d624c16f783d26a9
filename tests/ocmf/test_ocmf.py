"""OCMF signed meter values: real ECDSA keys sign real payloads; every failure names its reason."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chargenet.core.ocmf import (
    OcmfFormatError,
    cdr_remark,
    parse,
    public_key_hex,
    signed_data,
    verify_session,
)


def reading(tm: str, tx: str, rv: str) -> dict[str, Any]:
    return {
        "TM": tm,
        "TX": tx,
        "RV": Decimal(rv),
        "RI": "01-00:B2.08.00.FF",
        "RU": "kWh",
        "RT": "AC",
        "ST": "G",
    }


def payload(page: int, *readings: dict[str, Any], serial: str = "BQ27400330016") -> str:
    # Written as a meter would (fixed key order, no spaces); floats stay as written.
    body = {
        "FV": "1.0",
        "GI": "chargenet-sim",
        "GS": "CP-1",
        "GV": "1.0",
        "PG": f"T{page}",
        "MV": "Phoenix Contact",
        "MM": "EEM-350-D-MCB",
        "MS": serial,
        "MF": "1.0.8",
        "IS": True,
        "IL": "VERIFIED",
        "IF": ["OCPP_RS_TLS"],
        "IT": "CENTRAL",
        "ID": "session-1",
        "RD": list(readings),
    }
    return (
        json.dumps(body, separators=(",", ":"), default=str)
        .replace('"RV":"', '"RV":')
        .replace('","RI"', ',"RI"')
    )


def sign(
    key: ec.EllipticCurvePrivateKey, text: str, algorithm: str = "ECDSA-secp256r1-SHA256"
) -> str:
    signature = key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
    return f'OCMF|{text}|{{"SA":"{algorithm}","SD":"{signature.hex().upper()}"}}'


@pytest.fixture(scope="module")
def meter_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def registered(meter_key: ec.EllipticCurvePrivateKey) -> str:
    return public_key_hex(meter_key.public_key())


BEGIN = reading("2024-06-03T10:00:00,000+0200 S", "B", "2935.6")
MIDDLE = reading("2024-06-03T10:30:00,000+0200 S", "C", "2945.1")
END = reading("2024-06-03T11:00:00,000+0200 S", "E", "2960.35")


def test_valid_single_record_verifies(
    meter_key: ec.EllipticCurvePrivateKey, registered: str
) -> None:
    record = sign(meter_key, payload(1, BEGIN, END))
    result = verify_session([record], registered, meter_serial="BQ27400330016")
    assert (result.ok, result.reason) == (True, None)
    assert result.energy_wh == Decimal("24750.00")
    assert result.begin is not None and result.begin.time.isoformat() == "2024-06-03T10:00:00+02:00"


def test_valid_paginated_records_verify(
    meter_key: ec.EllipticCurvePrivateKey, registered: str
) -> None:
    records = [
        sign(meter_key, payload(7, BEGIN)),
        sign(meter_key, payload(8, MIDDLE)),
        sign(meter_key, payload(9, END)),
    ]
    result = verify_session(records, registered)
    assert result.ok, result.reason
    assert [r.type for r in result.readings] == ["B", "C", "E"]


def test_payload_is_kept_byte_exact(meter_key: ec.EllipticCurvePrivateKey) -> None:
    text = payload(1, BEGIN, END)
    record = parse(sign(meter_key, text))
    assert record.payload_text == text
    assert record.signed_bytes == text.encode()
    # reading values are exact decimals, never floats
    assert record.readings[1].value == Decimal("2960.35")


def test_changed_payload_byte_fails(meter_key: ec.EllipticCurvePrivateKey, registered: str) -> None:
    record = sign(meter_key, payload(1, BEGIN, END))
    tampered = record.replace('"RV":2960.35', '"RV":2960.36')
    assert tampered != record
    result = verify_session([tampered], registered)
    assert not result.ok
    assert (
        result.reason == "record 1: the signature does not verify against the registered meter key"
    )
    assert result.energy_wh is None


def test_wrong_key_fails(meter_key: ec.EllipticCurvePrivateKey) -> None:
    other = public_key_hex(ec.generate_private_key(ec.SECP256R1()).public_key())
    result = verify_session([sign(meter_key, payload(1, BEGIN, END))], other)
    assert (
        result.reason == "record 1: the signature does not verify against the registered meter key"
    )


def test_key_on_another_curve_fails(meter_key: ec.EllipticCurvePrivateKey) -> None:
    k1 = public_key_hex(ec.generate_private_key(ec.SECP256K1()).public_key())
    result = verify_session([sign(meter_key, payload(1, BEGIN, END))], k1)
    assert (
        result.reason == "record 1: the record is signed with ECDSA-secp256r1-SHA256 "
        "but the meter key is on secp256k1"
    )


def test_missing_end_reading_fails(meter_key: ec.EllipticCurvePrivateKey, registered: str) -> None:
    result = verify_session([sign(meter_key, payload(1, BEGIN, MIDDLE))], registered)
    assert result.reason == "missing end reading: the last reading is TX=C"


def test_missing_begin_reading_fails(
    meter_key: ec.EllipticCurvePrivateKey, registered: str
) -> None:
    result = verify_session([sign(meter_key, payload(1, MIDDLE, END))], registered)
    assert result.reason == "missing begin reading: the first reading is TX=C"


def test_pagination_gap_fails(meter_key: ec.EllipticCurvePrivateKey, registered: str) -> None:
    records = [sign(meter_key, payload(7, BEGIN)), sign(meter_key, payload(9, END))]
    result = verify_session(records, registered)
    assert result.reason == "pagination gap: T9 follows T7"


def test_register_going_backwards_fails(
    meter_key: ec.EllipticCurvePrivateKey, registered: str
) -> None:
    backwards = reading("2024-06-03T11:00:00,000+0200 S", "E", "2900")
    result = verify_session([sign(meter_key, payload(1, BEGIN, backwards))], registered)
    assert result.reason == "reading 2: the energy register went backwards"


def test_records_from_another_meter_fail(
    meter_key: ec.EllipticCurvePrivateKey, registered: str
) -> None:
    result = verify_session(
        [sign(meter_key, payload(1, BEGIN, END))], registered, meter_serial="OTHER"
    )
    assert (
        result.reason == "the records come from meter 'BQ27400330016', not the registered 'OTHER'"
    )


def test_secp256k1_and_pem_keys_verify() -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    record = sign(key, payload(1, BEGIN, END), "ECDSA-secp256k1-SHA256")
    assert verify_session([record], pem).ok


def test_malformed_records_fail_with_the_reason(
    meter_key: ec.EllipticCurvePrivateKey, registered: str
) -> None:
    assert (
        verify_session(["OCMF|{}"], registered).reason
        == "record 1: an OCMF record has three '|'-separated sections"
    )
    assert (
        verify_session(["XYZ|{}|{}"], registered).reason
        == "record 1: an OCMF record starts with 'OCMF|'"
    )
    assert (
        verify_session(['OCMF|{"RD":[]}|{"SD":"00"}'], registered).reason
        == "record 1: the payload has no readings (RD)"
    )
    assert verify_session([], registered).reason == "no signed meter values"
    with pytest.raises(OcmfFormatError, match="TM 'yesterday' is not an OCMF time"):
        parse('OCMF|{"RD":[{"TM":"yesterday","TX":"B","RV":1,"RU":"kWh"}]}|{"SD":"00"}')


def test_failed_verification_flags_the_cdr(
    meter_key: ec.EllipticCurvePrivateKey, registered: str
) -> None:
    good = sign(meter_key, payload(1, BEGIN, END))
    data = signed_data([good], registered)
    assert data.signed_values[0].signed_data == good
    assert data.encoding_method == "OCMF"
    assert cdr_remark(verify_session([good], registered)) is None
    remark = cdr_remark(verify_session([sign(meter_key, payload(1, BEGIN, MIDDLE))], registered))
    assert (
        remark
        == "SIGNED METER VALUES FAILED VERIFICATION: missing end reading: the last reading is TX=C"
    )
