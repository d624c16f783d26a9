"""The embedded default: the signer on the in-process eth-tester chain, no node, SQLite."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from chargenet.core.signer_client import SignerClient, TxStatus
from tests.signer.harness import PROBE, TOKEN, inprocess_signer, signer_env

TAG = b"\x09" * 32


def test_embedded_chain_sends_tracks_and_reports_reverts(tmp_path: Path) -> None:
    provider = EthereumTesterProvider()
    w3 = Web3(provider)
    deployer = w3.eth.accounts[0]
    tx_hash = w3.eth.send_transaction({"from": deployer, "data": PROBE["bytecode"]})
    probe = w3.eth.wait_for_transaction_receipt(tx_hash)["contractAddress"]
    assert probe is not None
    keys = [Account.create(), Account.create()]
    env = signer_env(f"sqlite:///{tmp_path}/signer.db", keys, probe, "inprocess://eth-tester")
    with inprocess_signer(env, provider=provider) as running, SignerClient(running.url, TOKEN) as c:
        ids = [f"e-{i}" for i in range(20)]
        for i, key in enumerate(ids):
            c.send_transaction(key, f"k{i % 2}", "bump", [2, TAG], contract="Probe")
        refused = c.send_transaction("e-zero", "k0", "bump", [0, TAG], contract="Probe")
        reverted = c.send_transaction(
            "e-large", "k1", "bump", [2000, TAG], contract="Probe", gas_limit=90_000
        )
        done = c.wait([*ids, "e-large"])
    assert all(done[k].status in (TxStatus.MINED, TxStatus.FINAL) for k in ids)
    assert sorted(done[k].nonce or 0 for k in ids if done[k].from_key == "k0") == list(range(10))
    assert refused.status is TxStatus.FAILED
    assert refused.revert_reason == "SignerProbe: amount is zero"
    assert reverted.nonce == 10
    assert done["e-large"].status is TxStatus.FAILED
    assert done["e-large"].revert_reason == "TooLarge(2000, 1000)"
    contract = w3.eth.contract(address=probe, abi=PROBE["abi"])
    assert contract.functions.total().call() == 2 * len(ids)
