"""Reading the chain: balances, nonces and a driver's history, with a short cache.

Writes never happen here: every transaction goes through the signer. Reads go straight to the
node (or the in-process chain), because they need no key and the signer's API has none.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import Web3

from chargenet.core.chain import contract_at
from chargenet.core.chain.rpc import abi_type, results, selector

#: Events of a driver's money, newest last; ``topic`` is the position of the driver's address
#: among the indexed arguments (1 = first).
_HISTORY_EVENTS: tuple[tuple[str, str, int], ...] = (
    ("ChargeToken", "Transfer", 1),
    ("ChargeToken", "Transfer", 2),
    ("ChargingEscrow", "Deposited", 1),
    ("ChargingEscrow", "Withdrawn", 1),
    ("ChargingEscrow", "SessionOpened", 2),
    ("ChargingEscrow", "SessionSettled", 3),
    ("ChargingEscrow", "SessionCancelled", 2),
    ("ChargingEscrow", "SessionRefunded", 2),
)


_BALANCE_OF = selector("balanceOf(address)")
_DEPOSIT_OF = selector("depositOf(address)")
_LAST_NONCE_OF = selector("lastNonceOf(address)")


def _int(value: Any) -> int:
    """A quantity or a uint256 return value, as a node (hex) or the in-process chain gives it."""
    if isinstance(value, int):
        return value
    if isinstance(value, bytes | bytearray):
        return int.from_bytes(value, "big")
    return int(str(value), 16)


@dataclass(frozen=True)
class Balance:
    token: int  # ChargeToken.balanceOf: tokens in the driver's own address
    deposit: int  # ChargingEscrow.depositOf: tokens in the escrow, free to lock
    block: int

    @property
    def total(self) -> int:
        return self.token + self.deposit


@dataclass(frozen=True)
class Snapshot:
    """What a session request reads from the chain, all at one block."""

    balance: Balance
    timestamp: int  # the block's: the session's expiry counts from it
    last_nonce: int | None  # ChargingEscrow.lastNonceOf, when asked for


@dataclass(frozen=True)
class HistoryEntry:
    block: int
    log_index: int
    tx_hash: str
    contract: str
    event: str
    args: dict[str, Any]


class ChainReader:
    def __init__(
        self, w3: Web3, token_address: str, escrow_address: str, *, cache_seconds: float = 5.0
    ) -> None:
        self.w3 = w3
        self.token = contract_at(w3, "ChargeToken", token_address)
        self.escrow = contract_at(w3, "ChargingEscrow", escrow_address)
        self._cache_seconds = cache_seconds
        self._balances: dict[str, tuple[float, Balance]] = {}
        self._history: dict[str, tuple[int, list[HistoryEntry]]] = {}
        self._lock = threading.Lock()
        self._chain_id: int | None = None
        self._token_name: str | None = None

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    @property
    def token_name(self) -> str:
        """The token's EIP-712 domain name (its ERC-20 name)."""
        if self._token_name is None:
            self._token_name = str(self.token.functions.name().call())
        return self._token_name

    def balance(self, address: str, *, fresh: bool = False) -> Balance:
        """Token balance and escrow deposit; served from the cache unless ``fresh`` (then both
        are read at one block: a payout splits its amount between them)."""
        now = time.monotonic()
        with self._lock:
            cached = self._balances.get(address)
        if cached is not None and not fresh and now - cached[0] < self._cache_seconds:
            return cached[1]
        return self.snapshot(address, exact=fresh).balance

    def snapshot(self, address: str, *, nonce: bool = False, exact: bool = False) -> Snapshot:
        """Balance (and ``lastNonceOf`` if ``nonce``) at the latest block, with its timestamp.

        The calls go raw (through web3's contract functions each cost more CPU than the node's
        answer), with the block in one JSON-RPC batch: one node round trip. A node answers a
        batch's calls at "latest" one after the other, so a deposit mined in between could be
        counted twice or not at all (it moves tokens from one balance to the other). That is
        good enough for a session request, where the answer only decides a clear 422 (the
        escrow contract refuses an open above the deposit whatever the wallet believed) and
        the second round trip was half its wait (18 of 33 ms, 10 drivers charging). ``exact``
        reads the block first and the calls at its number, for what moves tokens by the split.
        """
        started = time.monotonic()
        argument = address.lower().removeprefix("0x").rjust(64, "0")
        views = [(self.token.address, _BALANCE_OF), (self.escrow.address, _DEPOSIT_OF)]
        if nonce:
            views.append((self.escrow.address, _LAST_NONCE_OF))

        def calls(block: str) -> list[tuple[str, list[Any]]]:
            return [
                ("eth_call", [{"to": to, "data": function + argument}, block])
                for to, function in views
            ]

        latest_block = ("eth_getBlockByNumber", ["latest", False])
        if exact:
            [latest] = results(self.w3, [latest_block])
            answers = results(self.w3, calls(hex(_int(latest["number"]))))
        else:
            latest, *answers = results(self.w3, [latest_block, *calls("latest")])
        block, timestamp = _int(latest["number"]), _int(latest["timestamp"])
        token, deposit, *last = (_int(answer) for answer in answers)
        balance = Balance(token=token, deposit=deposit, block=block)
        with self._lock:
            _keep_recent(self._balances, address, (started, balance))
        return Snapshot(balance=balance, timestamp=timestamp, last_nonce=last[0] if last else None)

    def forget(self, address: str) -> None:
        """Drop the cached balance after the wallet itself changed it."""
        with self._lock:
            self._balances.pop(address, None)

    def last_nonce(self, address: str) -> int:
        return int(self.escrow.functions.lastNonceOf(to_checksum_address(address)).call())

    def permit_nonce(self, address: str) -> int:
        return int(self.token.functions.nonces(to_checksum_address(address)).call())

    def ether(self, address: str) -> int:
        return int(self.w3.eth.get_balance(to_checksum_address(address)))

    def timestamp(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def history(self, address: str, from_block: int = 0) -> list[HistoryEntry]:
        """Every event that moved the driver's tokens, oldest first; cached per chain head.

        New blocks extend the cached list from where it stopped, so a long history is fetched
        once. Reorgs deeper than the cache's last block are not undone here: the history is a
        view for the driver, the balance is always read fresh from the chain.
        """
        head = int(self.w3.eth.block_number)
        with self._lock:
            cached_head, entries = self._history.get(address, (from_block - 1, []))
        if cached_head >= head:
            return list(entries)
        topic = "0x" + "00" * 12 + to_checksum_address(address)[2:].lower()
        fresh: list[HistoryEntry] = []
        contracts = {"ChargeToken": self.token, "ChargingEscrow": self.escrow}
        for name, event_name, position in _HISTORY_EVENTS:
            contract = contracts[name]
            event = getattr(contract.events, event_name)()
            topics: list[Any] = [_topic0(contract, event_name)]
            topics.extend([None] * (position - 1))
            topics.append(topic)
            logs = self.w3.eth.get_logs(
                {
                    "address": contract.address,
                    "fromBlock": cached_head + 1,
                    "toBlock": head,
                    "topics": topics,
                }
            )
            for log in logs:
                decoded = event.process_log(log)
                fresh.append(
                    HistoryEntry(
                        block=int(log["blockNumber"]),
                        log_index=int(log["logIndex"]),
                        tx_hash="0x" + bytes(log["transactionHash"]).hex(),
                        contract=name,
                        event=event_name,
                        args={k: _plain(v) for k, v in decoded["args"].items()},
                    )
                )
        merged = sorted(
            {(e.block, e.log_index): e for e in [*entries, *fresh]}.values(),
            key=lambda e: (e.block, e.log_index),
        )
        with self._lock:
            _keep_recent(self._history, address, (head, merged))
        return list(merged)


#: Drivers whose balance and history a process keeps: the most recently read. Kept for every
#: driver it ever served, the histories grew without end in a long-running wallet.
CACHED_DRIVERS = 10_000


def _keep_recent(cache: dict[str, Any], key: str, value: Any) -> None:
    """Store ``value`` as the most recent entry, dropping the least recent past the limit."""
    cache.pop(key, None)
    cache[key] = value
    if len(cache) > CACHED_DRIVERS:
        cache.pop(next(iter(cache)))


def _topic0(contract: Any, event_name: str) -> str:
    for item in contract.abi:
        if item.get("type") == "event" and item.get("name") == event_name:
            types = ",".join(abi_type(arg) for arg in item["inputs"])
            return "0x" + Web3.keccak(text=f"{event_name}({types})").hex().removeprefix("0x")
    raise LookupError(event_name)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        # Token amounts exceed JSON's safe integers; decimal strings keep them exact.
        return str(value)
    return value
