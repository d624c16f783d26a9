"""The wallet's chain read (one block, the calls in one batch) on both chains it runs on: the
in-process one and a JSON-RPC node (the shared Hardhat node, when it runs)."""

from __future__ import annotations

from eth_account import Account
from web3 import Web3

from chargenet.core.chain import deploy_chargenet, send
from chargenet.wallet.chain import ChainReader


def test_snapshot_reads_one_block(either_chain: Web3) -> None:
    w3 = either_chain
    admin = w3.eth.accounts[0]
    deployment = deploy_chargenet(w3, admin=admin, minter=admin)
    driver = Account.create().address
    send(w3, deployment.token.functions.mint(driver, 7_000_000), admin)
    reader = ChainReader(w3, deployment.token.address, deployment.escrow.address)

    snapshot = reader.snapshot(driver, nonce=True)

    block = w3.eth.get_block(snapshot.balance.block)
    assert snapshot.timestamp == block["timestamp"]
    assert (snapshot.balance.token, snapshot.balance.deposit, snapshot.last_nonce) == (
        7_000_000,
        0,
        0,
    )
    assert snapshot.balance.token == deployment.token.functions.balanceOf(driver).call()
    assert reader.snapshot(driver).last_nonce is None  # not asked for
    cached = reader.balance(driver)  # the last read, from the cache
    assert (cached.token, cached.deposit) == (7_000_000, 0)
