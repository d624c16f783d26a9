"""Decoding the registry's and the escrow's logs, straight from the JSON-RPC wire format.

Their events have only static fields, so decoding is slicing 64-hex-digit words out of the log's
``data`` string; no ABI decoder, no bytes round trip. :class:`chargenet.registry.rpc.ChainReader`
hands every chain's answers over in that format. Together that keeps catch-up close to the speed
of ``eth_getLogs`` itself (see bench/indexer.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from operator import attrgetter
from typing import Any

from eth_utils.crypto import keccak
from web3 import Web3

from chargenet.core.chain import load_artifact
from chargenet.registry.rpc import RpcError


class Kind(StrEnum):
    REGISTERED = "registered"
    UPDATED = "updated"
    RETIRED = "retired"
    OPERATOR_SET = "operator_set"
    SESSION_OPENED = "session_opened"
    SESSION_SETTLED = "settled"
    SESSION_CANCELLED = "cancelled"
    SESSION_REFUNDED = "refunded"


def _signature(contract: str, event: str) -> str:
    for item in load_artifact(contract).abi:
        if item["type"] == "event" and item["name"] == event:
            types = ",".join(str(i["type"]) for i in item["inputs"])
            return "0x" + keccak(text=f"{event}({types})").hex()
    raise LookupError(f"{contract} has no event {event}")


REGISTRY_TOPICS: dict[str, Kind] = {
    _signature("StationRegistry", "StationRegistered"): Kind.REGISTERED,
    _signature("StationRegistry", "StationUpdated"): Kind.UPDATED,
    _signature("StationRegistry", "StationRetired"): Kind.RETIRED,
    _signature("StationRegistry", "OperatorSet"): Kind.OPERATOR_SET,
}
ESCROW_TOPICS: dict[str, Kind] = {
    _signature("ChargingEscrow", "SessionOpened"): Kind.SESSION_OPENED,
    _signature("ChargingEscrow", "SessionSettled"): Kind.SESSION_SETTLED,
    _signature("ChargingEscrow", "SessionCancelled"): Kind.SESSION_CANCELLED,
    _signature("ChargingEscrow", "SessionRefunded"): Kind.SESSION_REFUNDED,
}
_KINDS = {**REGISTRY_TOPICS, **ESCROW_TOPICS}


#: StationRegistry.StationInfo as the logs carry it, in this order (the index's column names).
FIELD_NAMES = (
    "latitude_e6",
    "longitude_e6",
    "connector_count",
    "max_power_w",
    "tariff_id",
    "tariff_hash",
    "meter_key_hash",
)
StationFields = tuple[int, int, int, int, str, str, str]


# A plain slotted dataclass: a frozen one pays an object.__setattr__ per field, per log.
@dataclass(slots=True)
class ChainEvent:
    """One decoded log, in chain order."""

    kind: Kind
    block_number: int
    block_hash: str
    log_index: int
    tx_hash: str
    key: str  # the station id, or the session id for escrow events
    account: str  # cpo (registered, retired), sender (updated), operator, or driver
    station_index: int = 0
    fields: StationFields | None = None
    allowed: bool = False
    station_id: str = ""  # escrow SessionOpened: the station's id


_PRINTABLE = bytes(range(0x21, 0x7F))


def station_key(raw: bytes) -> str:
    """A station id as text: the ASCII id left-aligned in bytes32 (e.g. ``DE*CNT*E0001``), or
    ``0x<hex>`` when the bytes are not printable ASCII."""
    text = raw.rstrip(b"\0")
    if text and not text.translate(None, _PRINTABLE):
        return text.decode("ascii")
    return "0x" + raw.hex()


def station_bytes(station_id: str) -> bytes:
    """The inverse of :func:`station_key`; raises ValueError for ids that do not fit bytes32."""
    if station_id.startswith("0x") and len(station_id) == 66:
        return bytes.fromhex(station_id[2:])
    raw = station_id.encode("ascii")
    if not raw or len(raw) > 32 or not all(0x21 <= b <= 0x7E for b in raw):
        raise ValueError("a station id is 1-32 printable ASCII characters without spaces")
    return raw.ljust(32, b"\0")


@lru_cache(maxsize=4096)
def _address(topic: str) -> str:
    # Cached: checksumming costs a keccak, and a chain's logs come from few distinct accounts.
    return Web3.to_checksum_address("0x" + topic[-40:])


@lru_cache(maxsize=1024)
def _hex_key(word: str) -> str:
    # Cached for tariff ids, which repeat across stations.
    return station_key(bytes.fromhex(word))


_SIGN = 1 << 255
_WRAP = 1 << 256


def _signed(word: str) -> int:
    value = int(word, 16)
    return value - _WRAP if value >= _SIGN else value


def _fields(data: str, first: int) -> StationFields:
    """The seven StationInfo words from word ``first`` of a log's 0x-hex data."""
    at = 2 + 64 * first
    return (
        _signed(data[at : at + 64]),
        _signed(data[at + 64 : at + 128]),
        int(data[at + 128 : at + 192], 16),
        int(data[at + 192 : at + 256], 16),
        _hex_key(data[at + 256 : at + 320]),
        "0x" + data[at + 320 : at + 384].lower(),
        "0x" + data[at + 384 : at + 448].lower(),
    )


# One decoder per kind: (kind, block number, block hash, log index, tx hash, topics, data).
_Decoder = Callable[[Kind, int, str, int, str, list[str], str], ChainEvent]


def _registered(kind: Kind, n: int, bh: str, i: int, tx: str, t: list[str], d: str) -> ChainEvent:
    key = station_key(bytes.fromhex(t[1][2:]))
    return ChainEvent(kind, n, bh, i, tx, key, _address(t[2]), int(d[2:66], 16), _fields(d, 1))


def _updated(kind: Kind, n: int, bh: str, i: int, tx: str, t: list[str], d: str) -> ChainEvent:
    key = station_key(bytes.fromhex(t[1][2:]))
    return ChainEvent(kind, n, bh, i, tx, key, _address(t[2]), 0, _fields(d, 0))


def _retired(kind: Kind, n: int, bh: str, i: int, tx: str, t: list[str], d: str) -> ChainEvent:
    return ChainEvent(kind, n, bh, i, tx, station_key(bytes.fromhex(t[1][2:])), _address(t[2]))


def _operator(kind: Kind, n: int, bh: str, i: int, tx: str, t: list[str], d: str) -> ChainEvent:
    key = station_key(bytes.fromhex(t[1][2:]))
    event = ChainEvent(kind, n, bh, i, tx, key, _address(t[2]))
    event.allowed = int(d[2:66], 16) != 0
    return event


def _opened(kind: Kind, n: int, bh: str, i: int, tx: str, t: list[str], d: str) -> ChainEvent:
    event = ChainEvent(kind, n, bh, i, tx, t[1].lower(), _address(t[2]), int(d[2:66], 16))
    event.station_id = station_key(bytes.fromhex(t[3][2:]))
    return event


def _closed(kind: Kind, n: int, bh: str, i: int, tx: str, t: list[str], d: str) -> ChainEvent:
    return ChainEvent(kind, n, bh, i, tx, t[1].lower(), _address(t[2]))


# Kind -> (decoder, topics, data words) a well-formed log of that kind has at least.
_DECODERS: dict[Kind, tuple[_Decoder, int, int]] = {
    Kind.REGISTERED: (_registered, 3, 8),
    Kind.UPDATED: (_updated, 3, 7),
    Kind.RETIRED: (_retired, 3, 0),
    Kind.OPERATOR_SET: (_operator, 3, 1),
    Kind.SESSION_OPENED: (_opened, 4, 1),
    Kind.SESSION_SETTLED: (_closed, 4, 0),
    Kind.SESSION_CANCELLED: (_closed, 4, 0),
    Kind.SESSION_REFUNDED: (_closed, 3, 0),
}
_ORDER = attrgetter("block_number", "log_index")


def decode(raw_logs: Iterable[dict[str, Any]]) -> list[ChainEvent]:
    """Decode the registry's and the escrow's logs (JSON-RPC wire format), in chain order.

    Logs with an unknown first topic are skipped (the filter asks only for known ones); a node
    that flags a log ``removed`` is answering about a chain it left, which the caller retries.
    """
    events: list[ChainEvent] = []
    append = events.append
    kinds = _KINDS
    # A range's logs come from few blocks: each block's number and hash are parsed once.
    blocks: dict[str, tuple[int, str]] = {}
    for log in raw_logs:
        if log.get("removed"):
            raise RpcError("the node returned a removed log: the chain moved during the query")
        topics = log["topics"]
        if not topics:
            continue
        kind = kinds.get(topics[0]) or kinds.get(topics[0].lower())
        if kind is None:
            continue
        decoder, topic_count, words = _DECODERS[kind]
        data = log["data"]
        if len(topics) < topic_count or len(data) < 2 + 64 * words:
            raise RpcError(f"malformed {kind} log: {log!r}")
        raw_hash = log["blockHash"]
        block = blocks.get(raw_hash)
        if block is None:
            block = blocks[raw_hash] = (int(log["blockNumber"], 16), raw_hash.lower())
        append(
            decoder(
                kind,
                block[0],
                block[1],
                int(log["logIndex"], 16),
                log["transactionHash"].lower(),
                topics,
                data,
            )
        )
    events.sort(key=_ORDER)
    return events


def topics_for(escrow: bool) -> list[str]:
    return [*REGISTRY_TOPICS, *(ESCROW_TOPICS if escrow else {})]
