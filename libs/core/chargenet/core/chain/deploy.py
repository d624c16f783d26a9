"""Deploying chargenet's contracts and sending transactions to them.

A sender is either the address of an account the node unlocks (eth-tester, a Hardhat node) or
an eth_account ``LocalAccount``, whose transactions are signed here and sent raw.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract

from chargenet.core.chain.artifacts import load_artifact

DEFAULT_TOKEN_NAME = "ChargeNet Euro"  # noqa: S105 - a token name, not a secret
DEFAULT_TOKEN_SYMBOL = "cEUR"  # noqa: S105 - a ticker, not a secret
DEFAULT_TOKEN_DECIMALS = 6


class TransactionFailed(RuntimeError):
    """A mined transaction that reverted."""


class SessionState(IntEnum):
    """ChargingEscrow.SessionState."""

    UNUSED = 0
    OPEN = 1
    CLOSED = 2


@dataclass(frozen=True)
class StationInfo:
    """StationRegistry.StationInfo: what a CPO states about a station."""

    latitude_e6: int
    longitude_e6: int
    connector_count: int
    max_power_w: int
    tariff_id: bytes
    tariff_hash: bytes
    meter_key_hash: bytes

    def as_tuple(self) -> tuple[int, int, int, int, bytes, bytes, bytes]:
        return (
            self.latitude_e6,
            self.longitude_e6,
            self.connector_count,
            self.max_power_w,
            self.tariff_id,
            self.tariff_hash,
            self.meter_key_hash,
        )

    @classmethod
    def from_tuple(cls, raw: tuple[Any, ...]) -> StationInfo:
        lat, lon, connectors, power, tariff_id, tariff_hash, meter_key_hash = raw
        return cls(
            int(lat),
            int(lon),
            int(connectors),
            int(power),
            bytes(tariff_id),
            bytes(tariff_hash),
            bytes(meter_key_hash),
        )


@dataclass(frozen=True)
class Deployment:
    """The three contracts of one chargenet deployment."""

    token: Contract
    registry: Contract
    escrow: Contract

    def addresses(self) -> dict[str, str]:
        return {
            "ChargeToken": self.token.address,
            "StationRegistry": self.registry.address,
            "ChargingEscrow": self.escrow.address,
        }


def contract_at(w3: Web3, name: str, address: str) -> Contract:
    """A handle on the deployed contract ``name`` at ``address``."""
    return w3.eth.contract(address=to_checksum_address(address), abi=load_artifact(name).abi)


def sender_address(sender: Any) -> str:
    return to_checksum_address(sender if isinstance(sender, str) else sender.address)


def send(w3: Web3, call: Any, sender: Any, *, gas: int | None = None) -> Any:
    """Sends a contract call or constructor from ``sender``; returns the receipt of a success."""
    params: dict[str, Any] = {"from": sender_address(sender)}
    if gas is not None:
        params["gas"] = gas
    if isinstance(sender, str):
        tx_hash = call.transact(params)
    else:
        params["nonce"] = w3.eth.get_transaction_count(params["from"], "pending")
        signed = sender.sign_transaction(call.build_transaction(params))
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1:
        raise TransactionFailed(f"transaction 0x{bytes(tx_hash).hex()} reverted")
    return receipt


def deploy(w3: Web3, name: str, *args: Any, sender: Any) -> Contract:
    """Deploys contract ``name`` with constructor ``args``."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = send(w3, factory.constructor(*args), sender)
    return contract_at(w3, name, receipt["contractAddress"])


def deploy_chargenet(
    w3: Web3,
    *,
    admin: Any,
    minter: str | None = None,
    token_name: str = DEFAULT_TOKEN_NAME,
    token_symbol: str = DEFAULT_TOKEN_SYMBOL,
    decimals: int = DEFAULT_TOKEN_DECIMALS,
) -> Deployment:
    """Deploys token, registry and escrow, links the escrow to the token, names the minter.

    ``admin`` deploys everything and keeps the token's admin role (minters, nothing else).
    """
    admin_address = sender_address(admin)
    token = deploy(
        w3, "ChargeToken", token_name, token_symbol, decimals, admin_address, sender=admin
    )
    registry = deploy(w3, "StationRegistry", sender=admin)
    escrow = deploy(w3, "ChargingEscrow", token.address, registry.address, sender=admin)
    send(w3, token.functions.setEscrow(escrow.address), admin)
    if minter is not None:
        send(w3, token.functions.setMinter(to_checksum_address(minter), True), admin)
    return Deployment(token=token, registry=registry, escrow=escrow)
