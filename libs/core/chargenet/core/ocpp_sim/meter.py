"""A simulated calibrated meter that signs its readings in OCMF, with its own secp256r1 key.

The key is derived from a seed and the meter's serial, so a CPO registering a station (which puts
``keccak(public key DER)`` on chain) and the charge point simulator started in another process
agree on it without exchanging files. A session's records run ``T1, T2, ...`` with a begin (``B``)
reading first and an end reading last, which is what ``chargenet.core.ocmf.verify_session`` checks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from eth_utils.crypto import keccak

#: The order of the P-256 group: a derived scalar must lie in [1, order - 1].
_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
ALGORITHM = "ECDSA-secp256r1-SHA256"
#: OBIS code of the active energy import register.
ENERGY_REGISTER = "01-00:01.08.00.FF"


def _ocmf_time(moment: datetime) -> str:
    """``2024-06-03T10:00:00,000+0000 S``: comma fraction, numeric offset, synchronised clock."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S,") + f"{utc.microsecond // 1000:03d}+0000 S"


@dataclass
class OcmfMeter:
    """One meter: its key, and the OCMF records it signs for one transaction at a time."""

    serial: str
    key: ec.EllipticCurvePrivateKey
    charge_point_id: str = ""
    _page: int = field(default=0, init=False)
    _transaction: str = field(default="", init=False)

    @classmethod
    def derive(cls, seed: str, serial: str, charge_point_id: str = "") -> OcmfMeter:
        digest = hashlib.sha256(f"chargenet-meter|{seed}|{serial}".encode()).digest()
        scalar = int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1
        return cls(serial, ec.derive_private_key(scalar, ec.SECP256R1()), charge_point_id)

    @property
    def public_key_der(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def public_key_hex(self) -> str:
        """Hex DER SubjectPublicKeyInfo, the form OCMF transparency tools (and the escrow) take."""
        return self.public_key_der.hex().upper()

    @property
    def key_hash(self) -> str:
        """``0x`` + keccak-256 of the DER key: what the station registry holds on chain."""
        return "0x" + keccak(self.public_key_der).hex()

    def begin(self, transaction: str, energy_wh: int, at: datetime | None = None) -> str:
        """The first record of a transaction: the begin reading (pagination restarts at T1)."""
        self._page, self._transaction = 0, transaction
        return self._record("B", energy_wh, at)

    def update(self, energy_wh: int, at: datetime | None = None) -> str:
        return self._record("T", energy_wh, at)

    def end(self, energy_wh: int, at: datetime | None = None, *, remote: bool = False) -> str:
        """The last record: ``R`` when the central system stopped it, else ``E``."""
        return self._record("R" if remote else "E", energy_wh, at)

    def _record(self, kind: str, energy_wh: int, at: datetime | None) -> str:
        self._page += 1
        kwh = Decimal(energy_wh) / 1000
        payload = {
            "FV": "1.0",
            "GI": "chargenet-sim",
            "GS": self.charge_point_id or self.serial,
            "GV": "1.0",
            "PG": f"T{self._page}",
            "MV": "chargenet",
            "MM": "sim-meter",
            "MS": self.serial,
            "MF": "1.0",
            "IS": True,
            "IL": "TRUSTED",
            "IF": ["OCPP_RS_TLS"],
            "IT": "CENTRAL",
            "ID": self._transaction,
            "RD": [
                {
                    "TM": _ocmf_time(at or datetime.now(UTC)),
                    "TX": kind,
                    "RV": f"@{kwh:.3f}@",
                    "RI": ENERGY_REGISTER,
                    "RU": "kWh",
                    "RT": "AC",
                    "ST": "G",
                }
            ],
        }
        # A meter writes RV as a JSON number; json.dumps cannot write an exact decimal, so the
        # value is spliced in as text (the signature covers these exact bytes).
        text = json.dumps(payload, separators=(",", ":")).replace('"@', "").replace('@"', "")
        signature = self.key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
        return f'OCMF|{text}|{{"SA":"{ALGORITHM}","SD":"{signature.hex().upper()}"}}'
