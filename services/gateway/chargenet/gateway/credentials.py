"""Charge point credentials: who may connect, with which password (stored only as a scrypt hash).

The file (JSON) lists the CPO's charge points::

    {"charge_points": [{"id": "CP-1", "password_hash": "scrypt$16384$8$1$<salt>$<hash>"}]}

Hashes are made with ``python -m chargenet.gateway.credentials hash`` (reads the password from
stdin). Verifying a scrypt hash costs tens of milliseconds on purpose, so it runs off the event
loop, and a successful check is remembered as a keyed digest so a fleet reconnecting after an
outage does not pay it again per socket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEME = "scrypt"
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1
_KEY_LENGTH = 32
#: OCPP 1.6 security whitepaper: the basic auth password is 16-40 characters.
MIN_PASSWORD_LENGTH = 16
MAX_PASSWORD_LENGTH = 40


class CredentialsError(ValueError):
    pass


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(
    password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P
) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=_KEY_LENGTH, maxmem=2**27
    )
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(digest)}"


@dataclass(frozen=True, slots=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        parts = text.split("$")
        if len(parts) != 6 or parts[0] != SCHEME:
            raise CredentialsError("password_hash must be scrypt$N$r$p$salt$hash")
        try:
            return cls(
                int(parts[1]),
                int(parts[2]),
                int(parts[3]),
                base64.b64decode(parts[4], validate=True),
                base64.b64decode(parts[5], validate=True),
            )
        except ValueError as error:
            raise CredentialsError(f"password_hash is malformed: {error}") from None

    def verify(self, password: str) -> bool:
        candidate = hashlib.scrypt(
            password.encode(),
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            dklen=len(self.digest),
            maxmem=2**27,
        )
        return hmac.compare_digest(candidate, self.digest)


class ChargePointCredential(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=48, pattern=r"^[A-Za-z0-9._\-:*]+$")
    password_hash: str | None = None

    @field_validator("password_hash")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            PasswordHash.parse(value)
        return value


class CredentialsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    charge_points: list[ChargePointCredential]


class CredentialStore:
    """The charge points this deployment serves and their password hashes."""

    def __init__(self, credentials: list[ChargePointCredential]) -> None:
        self._hashes: dict[str, PasswordHash | None] = {
            c.id: PasswordHash.parse(c.password_hash) if c.password_hash else None
            for c in credentials
        }
        # Remembered successes: HMAC under a per-process key, never the password itself.
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_json(cls, text: str) -> CredentialStore:
        try:
            return cls(CredentialsFile.model_validate_json(text).charge_points)
        except ValidationError as error:
            raise CredentialsError(f"charge point credentials: {error}") from None

    @classmethod
    def from_file(cls, path: Path) -> CredentialStore:
        try:
            text = path.read_text()
        except OSError as error:
            raise CredentialsError(f"cannot read credentials file {path}: {error}") from None
        return cls.from_json(text)

    def __contains__(self, charge_point_id: object) -> bool:
        return charge_point_id in self._hashes

    def __len__(self) -> int:
        return len(self._hashes)

    def check(self, charge_point_id: str, password: str) -> bool:
        """True if ``password`` is this charge point's; blocking (call it off the event loop)."""
        stored = self._hashes.get(charge_point_id)
        if stored is None or not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
            return False
        mark = hmac.new(self._key, password.encode(), hashlib.sha256).digest()
        with self._lock:
            remembered = self._verified.get(charge_point_id)
        if remembered is not None and hmac.compare_digest(remembered, mark):
            return True
        if not stored.verify(password):
            return False
        with self._lock:
            self._verified[charge_point_id] = mark
        return True


def main(argv: list[str] | None = None) -> None:
    """``python -m chargenet.gateway.credentials hash`` < password: print its scrypt hash."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["hash"]:
        print("usage: python -m chargenet.gateway.credentials hash < password", file=sys.stderr)
        raise SystemExit(2)
    password = sys.stdin.readline().rstrip("\n")
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        print(
            f"the password must be {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters",
            file=sys.stderr,
        )
        raise SystemExit(2)
    print(json.dumps({"password_hash": hash_password(password)}))


if __name__ == "__main__":
    main()
