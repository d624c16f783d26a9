"""Signed meter values in the Open Charge Metering Format (OCMF): parse, verify, attach to a CDR.

    from chargenet.core.ocmf import verify_session, signed_data, cdr_remark

    verification = verify_session(records, registered_meter_key_hex)
    if not verification.ok:
        ...  # flag the session; build_cdr(remark=cdr_remark(verification), ...)

Written on ``cryptography`` rather than ``pyocmf``: the checks needed here (byte-exact payload,
the registered key, pagination across records, begin/end readings) are a few dozen lines, and
``cryptography`` is already a core dependency.
"""

from __future__ import annotations

from collections.abc import Sequence

from chargenet.core.ocmf.record import (
    DEFAULT_ALGORITHM,
    END_TYPES,
    OcmfFormatError,
    OcmfRecord,
    Reading,
    parse,
)
from chargenet.core.ocmf.verify import (
    CURVES,
    MeterKeyError,
    Verification,
    load_public_key,
    public_key_hex,
    signature_problem,
    verify_session,
)
from chargenet.core.pricing.cdr import SignedData, SignedValue

#: How the CDR's remark starts when the signed meter values failed verification.
UNVERIFIED_REMARK = "SIGNED METER VALUES FAILED VERIFICATION: "


def signed_data(
    records: Sequence[str], meter_key_hex: str, *, url: str | None = None
) -> SignedData:
    """The OCPI SignedData of a session: each OCMF record byte-exact in ``signed_data``."""
    values = []
    for number, text in enumerate(records, 1):
        nature = "Start" if number == 1 else ("End" if number == len(records) else "Intermediate")
        if len(records) == 1:
            nature = "Start/End"
        values.append(SignedValue(nature=nature, plain_data="", signed_data=text))
    return SignedData(
        encoding_method="OCMF",
        encoding_method_version=1,
        public_key=meter_key_hex,
        signed_values=values,
        url=url,
    )


def cdr_remark(verification: Verification) -> str | None:
    """The CDR remark that flags a failed verification (None when it verified)."""
    if verification.ok:
        return None
    return (UNVERIFIED_REMARK + (verification.reason or "unknown reason"))[:255]


__all__ = [
    "CURVES",
    "DEFAULT_ALGORITHM",
    "END_TYPES",
    "UNVERIFIED_REMARK",
    "MeterKeyError",
    "OcmfFormatError",
    "OcmfRecord",
    "Reading",
    "Verification",
    "cdr_remark",
    "load_public_key",
    "parse",
    "public_key_hex",
    "signature_problem",
    "signed_data",
    "verify_session",
]
