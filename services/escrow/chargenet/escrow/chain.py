"""Reading the chain (no key needed): stations and escrow sessions.

Writes never happen here: they go through the signer (``chargenet.escrow.worker``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from eth_abi.abi import decode
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError

from chargenet.core.chain import SessionState, StationInfo, contract_at, load_artifact
from chargenet.core.chain.rpc import (
    ChainReadError,
    abi_type,
    answers,
    batches,
    is_revert_answer,
    selector,
)


@dataclass(frozen=True)
class Station:
    index: int
    cpo: str
    active: bool
    info: StationInfo


@dataclass(frozen=True)
class EscrowSession:
    state: SessionState
    maximum: int
    expiry: int


def _function_outputs(contract: str, name: str) -> list[str]:
    for item in load_artifact(contract).abi:
        if item["type"] == "function" and item["name"] == name:
            return [abi_type(output) for output in item["outputs"]]
    raise LookupError(f"{contract}.{name}")


_STATION = selector("station(bytes32)")
_STATION_OUTPUTS = _function_outputs("StationRegistry", "station")
_REVERTED = "execution reverted: "


def is_revert(error: Exception) -> bool:
    """A contract revert, as web3 reports it from a node or eth-tester from py-evm."""
    if isinstance(error, ContractCustomError | ContractLogicError):
        return True
    return type(error).__name__ == "TransactionFailed" and str(error).startswith(_REVERTED)


class ChainReader:
    """The escrow and registry contracts at their deployed addresses."""

    def __init__(self, w3: Web3, escrow_address: str) -> None:
        self.w3 = w3
        self.escrow = contract_at(w3, "ChargingEscrow", escrow_address)
        self.registry = contract_at(w3, "StationRegistry", self.escrow.functions.registry().call())

    def stations(self, station_ids: Iterable[bytes]) -> dict[bytes, Station | None]:
        """Several stations (None: unknown) in one round trip to a node: a consumer batch's
        requests are checked against the chain before its transaction begins."""
        wanted = list(dict.fromkeys(station_ids))
        if not wanted or not batches(self.w3):
            return {station_id: self.station(station_id) for station_id in wanted}
        to = self.registry.address
        calls = [
            ("eth_call", [{"to": to, "data": _STATION + station_id.hex()}, "latest"])
            for station_id in wanted
        ]
        found: dict[bytes, Station | None] = {}
        for station_id, answer in zip(wanted, answers(self.w3, calls), strict=True):
            if "result" in answer:
                raw = bytes.fromhex(str(answer["result"]).removeprefix("0x"))
                index, cpo, active, info = decode(_STATION_OUTPUTS, raw)
                found[station_id] = Station(
                    int(index),
                    Web3.to_checksum_address(cpo),
                    bool(active),
                    StationInfo.from_tuple(tuple(info)),
                )
            elif is_revert_answer(answer):
                found[station_id] = None  # UnknownStation
            else:
                raise ChainReadError(f"StationRegistry.station failed: {answer.get('error')}")
        return found

    def station(self, station_id: bytes) -> Station | None:
        """The station, or None when the registry does not know it."""
        try:
            index, cpo, active, info = self.registry.functions.station(station_id).call()
        except Exception as error:
            if not is_revert(error):
                raise
            return None
        return Station(int(index), str(cpo), bool(active), StationInfo.from_tuple(tuple(info)))

    def session(self, chain_session_id: bytes) -> EscrowSession:
        state, _driver, _index, maximum, expiry = self.escrow.functions.sessionOf(
            chain_session_id
        ).call()
        return EscrowSession(SessionState(int(state)), int(maximum), int(expiry))

    def chain_time(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])
