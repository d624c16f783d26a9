"""The engine's lanes (one per sending account) against the real Hardhat node: idle ones go away,
busy ones stay, and a lane that comes back takes its nonce from the chain."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from chargenet.core.signer_client import SignerClient, TxStatus
from chargenet.signer.engine import Engine
from tests.signer.harness import (
    TOKEN,
    funder,
    inprocess_signer,
    probe_contract,
    rpc,
    send_from,
    signer_env,
)

pytestmark = pytest.mark.hardhat
TAG = b"\x0a" * 32


def hd_accounts(count: int) -> tuple[str, list[LocalAccount]]:
    """A fresh mnemonic (every test starts from nonce 0 on the shared node) and its first keys."""
    _, mnemonic = Account.create_with_mnemonic()
    accounts = [
        Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
        for index in range(count)
    ]
    return mnemonic, accounts


def fund(w3: Web3, accounts: list[LocalAccount]) -> None:
    for account in accounts:
        send_from(w3, funder(), {"to": account.address, "value": 10**18})


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def hd_env(tmp_path: Path, probe: str, rpc_url: str, mnemonic: str, **more: str) -> dict[str, str]:
    """An in-process signer's environment that derives its keys from ``mnemonic`` and drops a
    lane as soon as it is idle."""
    env = signer_env(
        f"sqlite:///{tmp_path}/signer.db",
        [],
        probe,
        rpc_url,
        CHARGENET_SIGNER_HD_MNEMONIC=mnemonic,
        CHARGENET_SIGNER_LANE_IDLE_SECONDS="0",
    )
    return {**env, **more}


def lanes_of(engine: Engine, accounts: list[LocalAccount]) -> int:
    return sum(1 for account in accounts if account.address in engine.lanes)


def test_idle_lanes_are_dropped_and_come_back_at_the_chain_nonce(
    w3: Web3, probe: str, rpc_url: str, tmp_path: Path
) -> None:
    """Many on-demand hd/<index> accounts each sending once: their lanes must not stay for good
    (the keys themselves are in a bounded cache). A lane that comes back reads the account's
    nonce from the chain again, past what was sent with the key meanwhile."""
    mnemonic, accounts = hd_accounts(12)
    fund(w3, accounts)
    env = hd_env(tmp_path, probe, rpc_url, mnemonic, CHARGENET_SIGNER_HD_CACHE_SIZE="4")
    with inprocess_signer(env) as running, SignerClient(running.url, TOKEN) as client:
        engine = running.app.engine
        assert engine is not None
        ids = [f"many-{index}" for index in range(len(accounts))]
        for index, key in enumerate(ids):
            client.send_transaction(key, f"hd/{index}", "bump", [1, TAG], contract="Probe")
        done = client.wait(ids, until=TxStatus.FINAL)
        assert all(done[key].status is TxStatus.FINAL for key in ids)
        assert eventually(lambda: len(engine.lanes) == 0), f"{len(engine.lanes)} lanes kept"

        # hd/0's key used outside the signer while it had no lane: nonce 1 is taken.
        send_from(w3, accounts[0], {"to": accounts[0].address, "value": 0})
        again = client.send_transaction("again-0", "hd/0", "bump", [1, TAG], contract="Probe")
        other = client.send_transaction("again-1", "hd/1", "bump", [1, TAG], contract="Probe")
        assert (again.nonce, other.nonce) == (2, 1)
        later = client.wait(["again-0", "again-1"], until=TxStatus.FINAL)
        assert all(t.status is TxStatus.FINAL for t in later.values()), later
        assert eventually(lambda: len(engine.lanes) == 0)
    contract = probe_contract(w3, probe)
    assert contract.functions.counts(accounts[0].address).call() == 2
    assert contract.functions.counts(accounts[1].address).call() == 2
    assert w3.eth.get_transaction_count(accounts[0].address) == 3


def test_a_lane_awaiting_receipts_is_kept(
    w3: Web3, probe: str, rpc_url: str, tmp_path: Path
) -> None:
    """Automining off: the transactions wait in the node's mempool, and their lane, however long
    idle otherwise, stays until their receipts are in."""
    mnemonic, accounts = hd_accounts(1)
    fund(w3, accounts)
    env = hd_env(tmp_path, probe, rpc_url, mnemonic)
    with inprocess_signer(env) as running, SignerClient(running.url, TOKEN) as client:
        engine = running.app.engine
        assert engine is not None
        rpc(w3, "evm_setAutomine", False)
        try:
            sent = [
                client.send_transaction(f"wait-{n}", "hd/0", "bump", [1, TAG], contract="Probe")
                for n in range(3)
            ]
            # Many polls of the tracker (every 0.1 s), each free to drop an idle lane.
            time.sleep(1.0)
            assert lanes_of(engine, accounts) == 1
            assert all(
                client.get_transaction(idempotency_key=t.idempotency_key).status is TxStatus.PENDING
                for t in sent
            )
            rpc(w3, "evm_mine")
        finally:
            rpc(w3, "evm_setAutomine", True)
        done = client.wait([t.idempotency_key for t in sent], until=TxStatus.FINAL)
        assert sorted(t.nonce or 0 for t in done.values()) == [0, 1, 2]
        assert eventually(lambda: lanes_of(engine, accounts) == 0)
        next_one = client.send_transaction("wait-3", "hd/0", "bump", [1, TAG], contract="Probe")
        assert next_one.nonce == 3
        client.wait(["wait-3"])
    assert probe_contract(w3, probe).functions.counts(accounts[0].address).call() == 4
