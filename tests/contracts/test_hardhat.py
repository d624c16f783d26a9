"""The full session flow on the real Hardhat node (CHARGENET_TEST_RPC_URL, see tests/conftest.py).

The artifacts target cancun; this proves the same bytecode runs and settles on Hardhat's EVM,
with drivers that hold no ether and a relayer paying the gas.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from eth_utils.crypto import keccak

from chargenet.core.chain import SessionState

pytestmark = pytest.mark.hardhat


def test_full_session_flow_on_hardhat(hardhat_env: Any, check_money: Callable[[Any], None]) -> None:
    env = hardhat_env
    assert env.chain_id == 31337
    escrow, token = env.escrow.functions, env.token.functions
    driver, other = env.drivers[0], env.drivers[1]
    cdr = keccak(b"hardhat cdr")

    # Deposit-funded session, settled by the station's operator key.
    deposit = env.deposit_of(driver.address)
    auth = env.open(driver, 1)
    assert env.state(auth.session_id) == SessionState.OPEN
    with env.reverts("AmountAboveMaximum"):
        escrow.settle(auth.session_id, env.MAXIMUM + 1, cdr).call({"from": env.operator})
    receipt = env.send(escrow.settle(auth.session_id, 12_340_000, cdr), env.operator)
    (settled,) = env.events(env.escrow, "SessionSettled", receipt)
    assert (settled.args["cpo"], settled.args["amount"], settled.args["cdrHash"]) == (
        env.cpo,
        12_340_000,
        cdr,
    )
    assert env.deposit_of(driver.address) == deposit - 12_340_000

    # Permit-funded session: the driver has tokens, no deposit use, no ether.
    permit_auth = env.authorise(other, 1)
    permit = env.permit(other, env.MAXIMUM)
    env.send(escrow.openWithPermit(permit_auth.as_request(), *permit.as_args()), env.relayer)
    env.send(escrow.settle(permit_auth.session_id, env.MAXIMUM, cdr), env.cpo)

    # Batches, then a refund after the expiry.
    auths = [env.authorise(d, 2) for d in env.drivers]
    env.send(escrow.openBatch([a.as_request() for a in auths]), env.relayer)
    env.send(escrow.settleBatch([(a.session_id, 1_000_000, cdr) for a in auths[:2]]), env.cpo)
    with env.reverts("NotExpired"):
        escrow.refund(auths[2].session_id).call({"from": env.relayer})
    env.travel(3601)
    env.send(escrow.refund(auths[2].session_id), env.relayer)
    assert env.state(auths[2].session_id) == SessionState.CLOSED

    # Payout: the CPO withdraws its earnings and the MSP burns them with the CPO's allowance.
    earned = env.deposit_of(env.cpo)
    assert earned == 12_340_000 + env.MAXIMUM + 2_000_000
    env.send(escrow.withdraw(env.cpo, earned), env.cpo)
    env.send(token.approve(env.minter, earned), env.cpo)
    supply = token.totalSupply().call()
    env.send(token.burnFrom(env.cpo, earned), env.minter)
    assert token.totalSupply().call() == supply - earned
    check_money(env)
