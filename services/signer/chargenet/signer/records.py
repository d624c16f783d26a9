"""The signer's view of a transaction, independent of the database and of protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PENDING = "PENDING"
    MINED = "MINED"
    FINAL = "FINAL"
    FAILED = "FAILED"
    REPLACED = "REPLACED"


#: States a record never leaves.
TERMINAL = frozenset({Status.FINAL, Status.FAILED})


@dataclass
class Attempt:
    tx_hash: str
    raw: bytes
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


@dataclass
class Request:
    """A validated send request, before it has a nonce."""

    caller: str
    idempotency_key: str
    fingerprint: str
    from_key: str
    from_address: str
    to_address: str
    function: str
    data: bytes
    value_wei: int
    gas_limit: int


@dataclass
class TxRecord:
    id: int
    caller: str
    idempotency_key: str
    fingerprint: str
    from_key: str
    from_address: str
    to_address: str
    function: str
    data: bytes
    value_wei: int
    gas_limit: int
    nonce: int | None
    status: Status
    tx_hash: str | None = None
    block_number: int | None = None
    block_hash: str | None = None
    receipt: dict[str, Any] | None = None
    revert_reason: str | None = None
    error: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    # Run-time state of the tracker, not stored: a restart re-broadcasts everything pending.
    sent_at: float = 0.0
    #: The last broadcast did not reach the node (or it asked for a higher fee): send again.
    unsent: bool = False
    #: The node asked for a higher fee: the tracker bumps it instead of sending it again as is.
    underpriced: bool = False
    #: When a poll first saw this nonce used on chain without a receipt for any of its hashes.
    unseen_since: float | None = None

    @property
    def replaced_hashes(self) -> list[str]:
        return [a.tx_hash for a in self.attempts if a.tx_hash != self.tx_hash]

    @property
    def latest(self) -> Attempt:
        return self.attempts[-1]

    def snapshot(self) -> TxRecord:
        """A copy safe to hand to another task while the tracker keeps changing this one."""
        return TxRecord(**{**self.__dict__, "attempts": list(self.attempts)})
