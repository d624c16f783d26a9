"""Reading the chain the way the indexer needs it: raw JSON-RPC and hand-decoded logs.

Raw requests skip web3's per-field result formatters, and the registry's and escrow's events have
only static fields, so decoding is slicing 32-byte words. Together that keeps catch-up close to
the speed of ``eth_getLogs`` itself (see bench/indexer.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from eth_utils.crypto import keccak
from web3 import Web3

from chargenet.core.chain import load_artifact
from chargenet.registry.rpc import RpcError


def _hex(value: Any) -> str:
    """A 0x-prefixed lowercase hex string from what the provider gave (str or bytes)."""
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    return str(value).lower()


def _int(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(str(value), 16)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    text = str(value)
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


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


# Plain slotted dataclasses: a frozen one pays an object.__setattr__ per field, per log.
@dataclass(slots=True)
class StationFields:
    """StationRegistry.StationInfo as the logs carry it."""

    latitude_e6: int
    longitude_e6: int
    connector_count: int
    max_power_w: int
    tariff_id: str
    tariff_hash: str
    meter_key_hash: str


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


def _word_int(data: bytes, index: int, *, signed: bool = False) -> int:
    return int.from_bytes(data[32 * index : 32 * index + 32], "big", signed=signed)


def _word_hex(data: bytes, index: int) -> str:
    return "0x" + data[32 * index : 32 * index + 32].hex()


def _fields(data: bytes, first: int) -> StationFields:
    return StationFields(
        latitude_e6=_word_int(data, first, signed=True),
        longitude_e6=_word_int(data, first + 1, signed=True),
        connector_count=_word_int(data, first + 2),
        max_power_w=_word_int(data, first + 3),
        tariff_id=station_key(data[32 * (first + 4) : 32 * (first + 5)]),
        tariff_hash=_word_hex(data, first + 5),
        meter_key_hash=_word_hex(data, first + 6),
    )


def decode(raw_logs: Iterable[dict[str, Any]]) -> list[ChainEvent]:
    """Decode the registry's and the escrow's logs, sorted into chain order.

    Logs with an unknown first topic are skipped (the filter asks only for known ones); a node
    that flags a log ``removed`` is answering about a chain it left, which the caller retries.
    """
    events: list[ChainEvent] = []
    for log in raw_logs:
        if log.get("removed"):
            raise RpcError("the node returned a removed log: the chain moved during the query")
        topics = [_hex(t) for t in log["topics"]]
        kind = REGISTRY_TOPICS.get(topics[0]) or ESCROW_TOPICS.get(topics[0])
        if kind is None:
            continue
        data = _bytes(log["data"])
        block_number = _int(log["blockNumber"])
        block_hash = _hex(log["blockHash"])
        log_index = _int(log["logIndex"])
        tx_hash = _hex(log["transactionHash"])
        account = _address(topics[2])
        if kind in ESCROW_TOPICS.values():
            opened = kind is Kind.SESSION_OPENED
            event = ChainEvent(
                kind,
                block_number,
                block_hash,
                log_index,
                tx_hash,
                key=topics[1],
                account=account,
                station_id=station_key(bytes.fromhex(topics[3][2:])) if opened else "",
                station_index=_word_int(data, 0) if opened else 0,
            )
        else:
            event = ChainEvent(
                kind,
                block_number,
                block_hash,
                log_index,
                tx_hash,
                key=station_key(bytes.fromhex(topics[1][2:])),
                account=account,
                station_index=_word_int(data, 0) if kind is Kind.REGISTERED else 0,
                fields=(
                    _fields(data, 1 if kind is Kind.REGISTERED else 0)
                    if kind in (Kind.REGISTERED, Kind.UPDATED)
                    else None
                ),
                allowed=kind is Kind.OPERATOR_SET and bool(_word_int(data, 0)),
            )
        events.append(event)
    events.sort(key=lambda e: (e.block_number, e.log_index))
    return events


def topics_for(escrow: bool) -> list[str]:
    return [*REGISTRY_TOPICS, *(ESCROW_TOPICS if escrow else {})]
