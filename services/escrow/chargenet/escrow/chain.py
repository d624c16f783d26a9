"""Reading the chain (no key needed): stations, escrow sessions, and dry runs of opens.

Writes never happen here: they go through the signer (``chargenet.escrow.worker``).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.abi import function_signature_to_4byte_selector
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError

from chargenet.core.chain import SessionState, StationInfo, contract_at, load_artifact


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


def _error_names() -> dict[str, str]:
    """4-byte selector (0x-hex) -> ``Name(types)`` of every custom error of the contracts."""
    names: dict[str, str] = {}
    for contract in ("ChargingEscrow", "StationRegistry", "ChargeToken"):
        for item in load_artifact(contract).abi:
            if item["type"] == "error":
                types = ",".join(i["type"] for i in item.get("inputs", []))
                signature = f"{item['name']}({types})"
                names["0x" + function_signature_to_4byte_selector(signature).hex()] = item["name"]
    return names


_ERRORS = _error_names()
_REVERTED = "execution reverted: "


def is_revert(error: Exception) -> bool:
    """A contract revert, as web3 reports it from a node or eth-tester from py-evm."""
    if isinstance(error, ContractCustomError | ContractLogicError):
        return True
    return type(error).__name__ == "TransactionFailed" and str(error).startswith(_REVERTED)


def revert_reason(error: Exception) -> str:
    """A readable name for a revert (``SessionSlotBusy``) instead of raw revert data."""
    data = getattr(error, "data", None)
    text = str(error)
    if data is None and text.startswith(_REVERTED + "b"):
        # eth-tester puts the revert data's bytes repr into the message.
        try:
            raw = ast.literal_eval(text.removeprefix(_REVERTED))
        except (ValueError, SyntaxError):
            raw = None
        if isinstance(raw, bytes):
            data = "0x" + raw.hex()
    if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        name = _ERRORS.get(data[:10].lower())
        if name:
            return name
    message = getattr(error, "message", None) or str(error)
    return str(message)[:200]


class ChainReader:
    """The escrow and registry contracts at their deployed addresses."""

    def __init__(self, w3: Web3, escrow_address: str) -> None:
        self.w3 = w3
        self.escrow = contract_at(w3, "ChargingEscrow", escrow_address)
        self.registry = contract_at(w3, "StationRegistry", self.escrow.functions.registry().call())

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

    def simulate_open(self, request: tuple[Any, ...], sender: str) -> str | None:
        """Why ``openFromDeposit(request)`` would revert if sent now, or None if it would not."""
        try:
            self.escrow.functions.openFromDeposit(request).call({"from": sender})
        except Exception as error:
            if not is_revert(error):
                raise
            return revert_reason(error)
        return None

    def simulate_opens(
        self, requests: Sequence[tuple[Any, ...]], sender: str
    ) -> tuple[list[str | None], bool]:
        """Why each open would revert if sent now (None: it would not), and whether all of them
        would succeed as one ``openBatch``. One node call when they would; each is tried alone
        only when the batch would revert."""
        if len(requests) > 1:
            try:
                self.escrow.functions.openBatch(list(requests)).call({"from": sender})
            except Exception as error:
                if not is_revert(error):
                    raise
            else:
                return [None] * len(requests), True
        problems = [self.simulate_open(request, sender) for request in requests]
        return problems, len(requests) == 1 or any(p is not None for p in problems)

    def chain_time(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])
