"""What each service may ask of the signer: the contract functions it calls and whether it signs
typed data. The signer's ``signer_callers`` setting is built from these, so a service's rights
are written once and every deployment (the embedded network, ``chargenet up``, tests) grants the
same. Keys differ per deployment and are passed in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

WALLET_FUNCTIONS = (
    "ChargeToken.mint",
    "ChargeToken.burnFrom",
    "ChargeToken.permit",
    "ChargingEscrow.depositWithPermit",
    "ChargingEscrow.withdraw",
    "0x*.fund",
)
REGISTRY_FUNCTIONS = ("StationRegistry.*",)
ESCROW_FUNCTIONS = (
    "ChargingEscrow.openFromDeposit",
    "ChargingEscrow.openBatch",
    "ChargingEscrow.settle",
    "ChargingEscrow.settleBatch",
    "ChargingEscrow.cancel",
    "ChargingEscrow.refund",
)
#: The wallet's own keys: drivers' HD keys, the minter and the relayer that pays their gas.
WALLET_KEYS = ("hd/*", "minter", "relayer")


def wallet_caller(token: str) -> dict[str, Any]:
    return {
        "token": token,
        "keys": list(WALLET_KEYS),
        "functions": list(WALLET_FUNCTIONS),
        "sign_typed_data": True,
    }


def registry_caller(token: str, cpo_keys: Sequence[str]) -> dict[str, Any]:
    return {"token": token, "keys": list(cpo_keys), "functions": list(REGISTRY_FUNCTIONS)}


def escrow_caller(token: str, settler_keys: Sequence[str]) -> dict[str, Any]:
    """The relayer opens; CPO (or operator) keys settle and cancel."""
    return {
        "token": token,
        "keys": ["relayer", *settler_keys],
        "functions": list(ESCROW_FUNCTIONS),
    }


def callers_json(callers: Mapping[str, dict[str, Any]]) -> str:
    """The ``signer_callers`` setting: caller name -> its rights."""
    return json.dumps(dict(callers))
