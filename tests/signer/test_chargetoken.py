"""The signer driving the project's own ChargeToken: registered by artifact, roles, the relayer
flow (a custodial HD key signs an EIP-2612 permit, an operator key submits it), custom errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

import chargenet.core.chain
from chargenet.core.chain.typed_data import permit_typed_data
from chargenet.core.signer_client import SignerClient, TxStatus
from chargenet.signer.settings import DEVELOPMENT_MNEMONIC
from tests.signer.harness import TOKEN, fresh_keys, funder, inprocess_signer, send_from, signer_env

pytestmark = pytest.mark.hardhat
NAME = "ChargeNet Euro"
#: The contracts' committed build output (libs/core/chargenet/core/chain/compiled/).
ARTIFACT = Path(chargenet.core.chain.__file__).parent / "compiled" / "ChargeToken.json"


def test_relayer_permit_flow_and_custom_errors(
    w3: Web3, probe: str, rpc_url: str, tmp_path: Path
) -> None:
    admin, relayer = fresh_keys(w3, 2)
    # The driver's custodial key, derived by the signer as hd/5; it signs and never sends.
    driver = Account.from_mnemonic(DEVELOPMENT_MNEMONIC, account_path="m/44'/60'/0'/0/5")
    artifact = json.loads(ARTIFACT.read_text())
    constructor = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"]).constructor(
        NAME, "cEUR", 6, admin.address
    )
    receipt = send_from(w3, funder(), {"data": constructor.data_in_transaction, "value": 0})
    token = str(receipt["contractAddress"])
    env = signer_env(
        f"sqlite:///{tmp_path}/signer.db",
        [admin, relayer],
        probe,
        rpc_url,
        contracts={"ChargeToken": {"address": token, "artifact": str(ARTIFACT)}},
    )
    with inprocess_signer(env) as running, SignerClient(running.url, TOKEN) as client:
        client.send_transaction(
            "minter", "k0", "setMinter", [admin.address, True], contract="ChargeToken"
        )
        client.wait(["minter"])
        client.send_transaction(
            "mint", "k0", "mint", [driver.address, 2_000_000], contract="ChargeToken"
        )
        permit = permit_typed_data(
            chain_id=31337,
            token=token,
            token_name=NAME,
            owner=driver.address,
            spender=relayer.address,
            value=1_500_000,
            nonce=0,
            deadline=2**40,
        )
        signed = client.sign_typed_data("hd/5", permit)
        assert signed.signer_address == driver.address
        r, s, v = signed.signature[:32], signed.signature[32:64], signed.signature[64]
        client.wait(["mint"])
        client.send_transaction(
            "permit",
            "k1",
            "permit",
            [driver.address, relayer.address, 1_500_000, 2**40, v, r, s],
            contract="ChargeToken",
        )
        client.wait(["permit"])
        pulled = client.send_transaction(
            "pull",
            "k1",
            "transferFrom",
            [driver.address, relayer.address, 1_500_000],
            contract="ChargeToken",
        )
        done = client.wait(["pull"])["pull"]
        assert done.status in (TxStatus.MINED, TxStatus.FINAL), done
        assert pulled.function == "ChargeToken.transferFrom(address,address,uint256)"
        # More than the relayer holds: refused at the estimate, the custom error decoded.
        refused = client.send_transaction(
            "too-much", "k1", "transfer", [admin.address, 10**12], contract="ChargeToken"
        )
    contract = w3.eth.contract(address=Web3.to_checksum_address(token), abi=artifact["abi"])
    assert contract.functions.balanceOf(relayer.address).call() == 1_500_000
    assert contract.functions.balanceOf(driver.address).call() == 500_000
    assert refused.status is TxStatus.FAILED
    assert refused.revert_reason == (
        f"InsufficientBalance({relayer.address.lower()}, 1500000, 1000000000000)"
    )
