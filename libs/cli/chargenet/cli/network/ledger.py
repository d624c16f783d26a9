"""What the chain says after a run: are tokens conserved, what is still locked, what gas went where.

Read straight from the contracts (never from a service's database), so the demo's and the tests'
final word does not depend on the services being right about themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from web3 import Web3

from chargenet.core.chain import SessionState, contract_at
from chargenet.core.chain.artifacts import load_artifact


@dataclass(frozen=True)
class Ledger:
    supply: int
    wallets: int  # tokens in holders' own addresses
    deposits: int  # tokens credited to holders inside the escrow
    locked: int  # tokens in sessions still open
    escrow_holds: int  # the escrow contract's token balance
    by_holder: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # address -> (wallet, deposit)

    @property
    def conserved(self) -> bool:
        """Every minted unit is in a wallet, a deposit or a lock; the escrow holds exactly its
        deposits plus its locks."""
        return (
            self.supply == self.wallets + self.escrow_holds
            and self.escrow_holds == self.deposits + self.locked
        )


def token_holders(w3: Web3, contracts: dict[str, str], first_block: int) -> list[str]:
    """Every address the token was ever transferred or minted to (the escrow aside)."""
    token = contract_at(w3, "ChargeToken", contracts["ChargeToken"])
    logs = token.events.Transfer().get_logs(from_block=first_block)
    escrow = contracts["ChargingEscrow"].lower()
    holders = {str(log["args"]["to"]) for log in logs}
    return sorted((h for h in holders if h.lower() != escrow), key=str.lower)


def read_ledger(
    w3: Web3, contracts: dict[str, str], holders: Iterable[str], chain_sessions: Iterable[str]
) -> Ledger:
    """Balances of ``holders`` (pass every holder for the conservation check to mean anything)."""
    token = contract_at(w3, "ChargeToken", contracts["ChargeToken"]).functions
    escrow = contract_at(w3, "ChargingEscrow", contracts["ChargingEscrow"]).functions
    by_holder = {
        str(address): (int(token.balanceOf(address).call()), int(escrow.depositOf(address).call()))
        for address in dict.fromkeys(Web3.to_checksum_address(a) for a in holders)
    }
    locked = 0
    for session in dict.fromkeys(chain_sessions):
        state, _driver, _index, maximum, _expiry = escrow.sessionOf(
            bytes.fromhex(session[2:])
        ).call()
        if SessionState(int(state)) is SessionState.OPEN:
            locked += int(maximum)
    return Ledger(
        supply=int(token.totalSupply().call()),
        wallets=sum(wallet for wallet, _ in by_holder.values()),
        deposits=sum(deposit for _, deposit in by_holder.values()),
        locked=locked,
        escrow_holds=int(token.balanceOf(contracts["ChargingEscrow"]).call()),
        by_holder=by_holder,
    )


@dataclass(frozen=True)
class GasLine:
    call: str
    count: int
    gas: int


def gas_by_call(w3: Web3, contracts: dict[str, str], first_block: int) -> list[GasLine]:
    """Gas of every transaction mined since ``first_block``, by contract function."""
    selectors: dict[tuple[str, bytes], str] = {}
    for name, address in contracts.items():
        for item in load_artifact(name).abi:
            if item.get("type") == "function":
                signature = f"{item['name']}({','.join(_type(i) for i in item['inputs'])})"
                selectors[(address.lower(), Web3.keccak(text=signature)[:4])] = (
                    f"{name}.{item['name']}"
                )
    count: dict[str, int] = defaultdict(int)
    gas: dict[str, int] = defaultdict(int)
    for number in range(first_block, int(w3.eth.block_number) + 1):
        block: Any = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            data = bytes(tx.get("input", tx.get("data", b"")))
            if not tx.get("to"):
                call = "contract deployment"
            elif not data:
                call = "ether transfer (gas funding)"
            else:
                call = selectors.get((str(tx["to"]).lower(), data[:4]), "other call")
            count[call] += 1
            gas[call] += int(receipt["gasUsed"])
    return sorted(
        (GasLine(call, count[call], gas[call]) for call in gas), key=lambda line: -line.gas
    )


def _type(item: dict[str, Any]) -> str:
    kind = str(item["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_type(c) for c in item["components"]) + ")" + kind[len("tuple") :]
    return kind
