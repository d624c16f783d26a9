"""Driver accounts: registration, password login, and each driver's custodial key in the signer.

A driver's key is the signer's HD key ``<prefix><offset + account number>``: derived from the
signer's one seed, never seen by the wallet. The signer has no "address of alias" call, so the
wallet learns the address by having the key sign a small EIP-712 statement binding it to the
driver (the signer derives the key on that first use and returns its address).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
import uuid
from typing import Any

import sqlalchemy as sa
from eth_utils.address import to_checksum_address
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chargenet.core.db import Database
from chargenet.core.errors import Conflict, Unauthorized, Unprocessable
from chargenet.core.signer_client import SignerClient
from chargenet.wallet import metrics
from chargenet.wallet.auth import hash_password, verify_password
from chargenet.wallet.models import Driver
from chargenet.wallet.settings import WalletSettings

#: No control characters: PostgreSQL cannot store a NUL in text (nor compare with one).
_EMAIL = re.compile(r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]{2,}")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
#: How long a driver's row is served from memory to the requests that name it by token.
DRIVER_CACHE_SECONDS = 30.0
DRIVER_CACHE_SIZE = 10_000
#: Every request of a driver not in the cache runs it: built once, not per request.
_DRIVER_BY_ID = sa.select(Driver).where(Driver.driver_id == sa.bindparam("driver_id"))


def binding_typed_data(driver_id: str) -> dict[str, Any]:
    """What a driver's key signs once so the signer reveals (and proves) its address."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
            ],
            "WalletKey": [{"name": "driver", "type": "string"}],
        },
        "primaryType": "WalletKey",
        "domain": {"name": "ChargeNet Wallet", "version": "1"},
        "message": {"driver": driver_id},
    }


class Accounts:
    def __init__(self, settings: WalletSettings, db: Database, signer: SignerClient) -> None:
        self.db = db
        self.signer = signer
        self._prefix = settings.wallet_driver_key_prefix
        self._offset = settings.wallet_driver_key_offset
        # Every authenticated request looks its driver up. What requests take from the row (id,
        # key alias, address, id token) never changes once created; ``last_nonce`` does, and is
        # only a hint outside the session request's transaction, which reads the row itself.
        self._drivers: dict[str, tuple[float, Driver]] = {}
        self._drivers_lock = threading.Lock()

    def register(self, email: str, password: str) -> Driver:
        """A new driver with a password (the development issuer's accounts)."""
        email = email.strip().lower()
        if not _EMAIL.fullmatch(email) or len(email) > 320:
            raise Unprocessable("email: not an e-mail address")
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise Unprocessable(f"password: between {MIN_PASSWORD} and {MAX_PASSWORD} characters")
        password_hash = hash_password(password)
        try:
            return self._create(str(uuid.uuid4()), email=email, password_hash=password_hash)
        except IntegrityError:
            raise Conflict("email: an account with this address exists") from None

    def provision(self, driver_id: str) -> Driver:
        """The account of a driver an external issuer vouches for, created on first use."""
        existing = self.find(driver_id)
        if existing is not None:
            return existing
        try:
            return self._create(driver_id, email=None, password_hash=None)
        except IntegrityError:
            # Two first requests of the same driver raced; the other one created it.
            found = self.find(driver_id)
            if found is None:
                raise
            return found

    def authenticate(self, email: str, password: str) -> Driver:
        driver = None
        if "\0" not in email:  # no account has one, and PostgreSQL cannot compare it (500)
            with self.db.session() as session:
                driver = session.scalars(
                    sa.select(Driver).where(Driver.email == email.strip().lower())
                ).one_or_none()
        if driver is None or not verify_password(driver.password_hash, password):
            metrics.LOGINS.labels(outcome="refused").inc()
            raise Unauthorized("wrong e-mail address or password")
        metrics.LOGINS.labels(outcome="ok").inc()
        return driver

    def cached(self, driver_id: str) -> Driver | None:
        """The driver if looked up less than ``DRIVER_CACHE_SECONDS`` ago (no database)."""
        with self._drivers_lock:
            cached = self._drivers.get(driver_id)
        if cached is not None and time.monotonic() - cached[0] < DRIVER_CACHE_SECONDS:
            return cached[1]
        return None

    def find(self, driver_id: str) -> Driver | None:
        if (cached := self.cached(driver_id)) is not None:
            return cached
        now = time.monotonic()
        with self.db.session() as session:
            driver = session.scalars(_DRIVER_BY_ID, {"driver_id": driver_id}).one_or_none()
        if driver is not None:
            with self._drivers_lock:
                if len(self._drivers) >= DRIVER_CACHE_SIZE:
                    self._drivers.pop(next(iter(self._drivers)))
                self._drivers[driver_id] = (now, driver)
        return driver

    def _create(self, driver_id: str, *, email: str | None, password_hash: str | None) -> Driver:
        with self.db.session() as session:
            placeholder = uuid.uuid4().hex
            driver = Driver(
                driver_id=driver_id,
                email=email,
                password_hash=password_hash,
                # Replaced below, before the row commits: the number picks the key.
                key_alias=f"pending-{placeholder}"[:64],
                address=f"pending-{placeholder}"[:42],
                id_token=placeholder[:20],
            )
            session.add(driver)
            session.flush()
            driver.key_alias = f"{self._prefix}{self._offset + driver.number}"
            driver.address = self._address_of(driver.key_alias, driver_id)
            driver.id_token = _new_id_token(session)
        metrics.ACCOUNTS.inc()
        return driver

    def _address_of(self, alias: str, driver_id: str) -> str:
        signed = self.signer.sign_typed_data(alias, binding_typed_data(driver_id))
        return to_checksum_address(signed.signer_address)


def _new_id_token(session: Session) -> str:
    """An OCPP id token (at most 20 characters in OCPP 1.6): ``CN`` and 16 random hex digits."""
    while True:
        token = "CN" + secrets.token_hex(8).upper()
        taken = session.scalar(sa.select(sa.func.count()).where(Driver.id_token == token))
        if not taken:
            return token
