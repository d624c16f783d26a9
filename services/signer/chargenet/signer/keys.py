"""The key ring: every private key the signer holds, by alias.

Keys come from encrypted keystore files, from a secret in the environment, or from BIP-44
derivation of one mnemonic (``hd/<index>``, one custodial key per driver). The ring hands out
signing operations, never key material: ``SigningKey`` keeps the account private and its repr
shows only the alias and address, so a key cannot leak through a log line or an error.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import coincurve
import rlp  # type: ignore[import-untyped]
from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from chargenet.signer.settings import SignerSettings

Account.enable_unaudited_hdwallet_features()

ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
HD_ALIAS = re.compile(r"^hd/(0|[1-9][0-9]{0,9})$")
_PRIVATE_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
#: BIP-32 indices below 2**31 are the non-hardened ones a path template may take.
HD_MAX_INDEX = 2**31 - 1
#: On-demand HD keys kept at once (``signer_hd_cache_size``): a caller allowed ``hd/*`` names
#: any of 2**31 indices, so what it makes the ring derive must not stay for good.
HD_CACHE_SIZE = 1024


class KeySource(StrEnum):
    KEYSTORE = "keystore"
    ENVIRONMENT = "environment"
    HD = "hd"


class KeyError_(LookupError):  # noqa: N801 - the builtin name is taken
    """An alias the ring does not hold (and cannot derive)."""


class KeyConfigurationError(ValueError):
    pass


class TypedDataError(ValueError):
    """Typed data that cannot be encoded as EIP-712; the message says why."""


@dataclass(frozen=True)
class Eip1559:
    """A type-2 contract call; ``to`` is a 0x address."""

    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: str
    value: int
    data: bytes


@dataclass(frozen=True)
class SignedTransaction:
    raw: bytes
    tx_hash: str


@dataclass(frozen=True)
class TypedDataSignature:
    signature: bytes
    digest: bytes


@dataclass
class SigningKey:
    alias: str
    address: str
    source: KeySource
    _account: LocalAccount = field(repr=False)

    def sign_transaction(self, tx: dict[str, Any]) -> SignedTransaction:
        signed = self._account.sign_transaction(tx)
        return SignedTransaction(raw=bytes(signed.raw_transaction), tx_hash=_hex(signed.hash))

    def sign_1559(self, tx: Eip1559) -> SignedTransaction:
        """The same bytes as ``sign_transaction`` for a type-2 call, about 20x faster.

        eth_account validates and normalises a dict per transaction, which costs more than the
        signature itself; the signer signs every transaction it sends, so it encodes the fixed
        EIP-1559 layout directly (``test_fast_signing_matches_eth_account`` pins equality)."""
        fields = [
            tx.chain_id,
            tx.nonce,
            tx.max_priority_fee_per_gas,
            tx.max_fee_per_gas,
            tx.gas,
            bytes.fromhex(tx.to[2:]),
            tx.value,
            tx.data,
            [],
        ]
        digest = keccak(b"\x02" + rlp.encode(fields))
        signature = coincurve.PrivateKey(bytes(self._account.key)).sign_recoverable(
            digest, hasher=None
        )
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:64], "big")
        raw = b"\x02" + rlp.encode([*fields, signature[64], r, s])
        return SignedTransaction(raw=raw, tx_hash=_hex(keccak(raw)))

    def sign_typed_data(self, typed_data: dict[str, Any]) -> TypedDataSignature:
        try:
            message = encode_typed_data(full_message=typed_data)
        except Exception as error:
            # The encoding depends on nothing but the caller's data, and eth_account raises
            # whatever its parsing hits on it (eth_abi's EncodingError, AttributeError,
            # TypeError, ValueError, ...): every failure here is the input's.
            raise TypedDataError(f"{type(error).__name__}: {error}") from None
        signed = self._account.sign_message(message)
        return TypedDataSignature(
            signature=bytes(signed.signature), digest=bytes(signed.message_hash)
        )


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


class KeyRing:
    """Aliases to keys.

    Keys added (configured, and HD keys preloaded at start) stay for good. Other ``hd/<index>``
    keys are derived on first use and kept in an LRU of ``hd_cache_size``; an evicted one is
    derived again, to the same address, when next asked for. Nothing may rely on getting the
    same ``SigningKey`` object twice: the engine's lanes are keyed by address and hold their own
    reference, so a lane's nonces never depend on a key staying cached."""

    def __init__(
        self,
        *,
        hd_mnemonic: str = "",
        hd_path: str = "m/44'/60'/0'/0/{index}",
        hd_cache_size: int = HD_CACHE_SIZE,
    ) -> None:
        if "{index}" not in hd_path:
            raise KeyConfigurationError("signer_hd_path: must contain {index}")
        if hd_cache_size < 1:
            raise KeyConfigurationError("signer_hd_cache_size: at least 1")
        self._keys: dict[str, SigningKey] = {}
        self._by_address: dict[str, SigningKey] = {}
        self._derived: OrderedDict[str, SigningKey] = OrderedDict()
        self._hd_cache_size = hd_cache_size
        self._hd_mnemonic = hd_mnemonic
        self._hd_seed: bytes | None = None
        self._hd_path = hd_path
        self._lock = threading.Lock()

    def add(self, alias: str, account: LocalAccount, source: KeySource) -> SigningKey:
        if not (ALIAS_PATTERN.match(alias) or HD_ALIAS.match(alias)):
            raise KeyConfigurationError(f"key alias {alias!r}: letters, digits, '_', '.', '-' only")
        if alias in self._keys:
            raise KeyConfigurationError(f"key alias {alias!r}: defined twice")
        key = SigningKey(alias=alias, address=account.address, source=source, _account=account)
        self._keys[alias] = key
        self._by_address.setdefault(account.address, key)
        with self._lock:
            self._derived.pop(alias, None)
        return key

    def get(self, alias: str) -> SigningKey:
        key = self._keys.get(alias)
        if key is not None:
            return key
        match = HD_ALIAS.match(alias)
        if match is None or not self._hd_mnemonic:
            raise KeyError_(alias)
        index = int(match.group(1))
        if index > HD_MAX_INDEX:
            raise KeyError_(alias)
        with self._lock:
            key = self._derived.get(alias)
            if key is not None:
                self._derived.move_to_end(alias)
                return key
            key = SigningKey(
                alias=alias,
                address=(account := self._derive(index)).address,
                source=KeySource.HD,
                _account=account,
            )
            self._derived[alias] = key
            while len(self._derived) > self._hd_cache_size:
                self._derived.popitem(last=False)
        return key

    def _derive(self, index: int) -> LocalAccount:
        # The seed is what the mnemonic stands for (holding it exposes nothing more), and
        # stretching the mnemonic into it is most of a derivation's cost: done once, a
        # re-derivation after an eviction is cheap.
        if self._hd_seed is None:
            try:
                self._hd_seed = seed_from_mnemonic(self._hd_mnemonic, "")
            except ValueError:
                raise KeyConfigurationError(
                    "signer_hd_mnemonic: not a valid BIP-39 mnemonic"
                ) from None
        private_key = key_from_seed(self._hd_seed, self._hd_path.format(index=index))
        account: LocalAccount = Account.from_key(private_key)
        return account

    @property
    def derived_cached(self) -> int:
        """On-demand HD keys held now (at most ``hd_cache_size``)."""
        return len(self._derived)

    def by_address(self, address: str) -> SigningKey | None:
        key = self._by_address.get(address)
        if key is not None:
            return key
        with self._lock:
            return next((k for k in self._derived.values() if k.address == address), None)

    def all(self) -> list[SigningKey]:
        """The keys held for good (configured and preloaded), not the on-demand HD ones: those
        come and go with the cache, and a listing must not depend on who asked for what."""
        return sorted(self._keys.values(), key=lambda key: key.alias)

    def preload_hd(self, count: int) -> None:
        for index in range(count):
            alias = f"hd/{index}"
            if alias not in self._keys:
                self.add(alias, self._derive(index), KeySource.HD)


def parse_key_list(secret: str) -> Iterable[tuple[str, str]]:
    """``alias=0xkey,alias2=0xkey2`` -> pairs. Errors name the alias, never the key."""
    for position, item in enumerate(part.strip() for part in secret.split(",")):
        if not item:
            continue
        alias, sep, value = item.partition("=")
        alias = alias.strip()
        if not sep or not alias:
            raise KeyConfigurationError(f"signer_keys: entry {position + 1} is not alias=0xkey")
        if not _PRIVATE_KEY.match(value.strip()):
            raise KeyConfigurationError(f"signer_keys: {alias}: not a 32-byte hex private key")
        yield alias, value.strip()


def load_keystore_dir(ring: KeyRing, folder: Path, password: str) -> None:
    if not folder.is_dir():
        raise KeyConfigurationError(f"signer_keystore_dir: {folder} is not a folder")
    for path in sorted(folder.glob("*.json")):
        try:
            encrypted = json.loads(path.read_text())
            private_key = Account.decrypt(encrypted, password)
        except ValueError as error:
            # The message of a failed decryption names no secret ("MAC mismatch").
            raise KeyConfigurationError(f"signer_keystore_dir: {path.name}: {error}") from None
        ring.add(path.stem, Account.from_key(private_key), KeySource.KEYSTORE)


def load_key_ring(settings: SignerSettings) -> KeyRing:
    ring = KeyRing(
        hd_mnemonic=settings.signer_hd_mnemonic.get_secret_value(),
        hd_path=settings.signer_hd_path,
        hd_cache_size=settings.signer_hd_cache_size,
    )
    for alias, value in parse_key_list(settings.signer_keys.get_secret_value()):
        ring.add(alias, Account.from_key(value), KeySource.ENVIRONMENT)
    if settings.signer_keystore_dir is not None:
        load_keystore_dir(
            ring, settings.signer_keystore_dir, settings.signer_keystore_password.get_secret_value()
        )
    if settings.signer_hd_preload:
        try:
            ring.preload_hd(settings.signer_hd_preload)
        except ValueError:
            raise KeyConfigurationError("signer_hd_mnemonic: not a valid BIP-39 mnemonic") from None
    return ring
