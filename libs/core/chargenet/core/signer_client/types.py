"""Plain, typed values the signer client returns (no protobuf classes leak to services)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class TxStatus(StrEnum):
    PENDING = "PENDING"
    MINED = "MINED"
    FINAL = "FINAL"
    FAILED = "FAILED"
    REPLACED = "REPLACED"

    @property
    def is_terminal(self) -> bool:
        return self in (TxStatus.FINAL, TxStatus.FAILED)

    def reached(self, target: TxStatus) -> bool:
        """True when a transaction in this state is at least ``target`` (or can never be)."""
        if self.is_terminal:
            return True
        order = [TxStatus.PENDING, TxStatus.MINED, TxStatus.FINAL]
        return self in order and target in order and order.index(self) >= order.index(target)


@dataclass(frozen=True)
class Log:
    address: str
    topics: tuple[str, ...]
    data: str
    log_index: int


@dataclass(frozen=True)
class Receipt:
    block_number: int
    block_hash: str
    gas_used: int
    effective_gas_price_wei: int
    success: bool
    transaction_index: int
    logs: tuple[Log, ...] = ()


@dataclass(frozen=True)
class Transaction:
    idempotency_key: str
    status: TxStatus
    from_key: str
    from_address: str
    to_address: str
    function: str
    nonce: int | None
    tx_hash: str
    replaced_hashes: tuple[str, ...] = ()
    replaced_by: str = ""
    receipt: Receipt | None = None
    confirmations: int = 0
    revert_reason: str = ""
    error: str = ""
    #: False when the idempotency key had been used before (only set by ``send_transaction``).
    created: bool = field(default=True, compare=False)


@dataclass(frozen=True)
class KeyInfo:
    alias: str
    address: str
    source: str


@dataclass(frozen=True)
class TypedDataSignature:
    signature: bytes
    signer_address: str
    digest: bytes
