"""ChargeToken: ERC-20, EIP-2612 permit, the MSP minter and the admin's few powers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chargenet.core.chain import deploy, load_artifact, sign_permit

ZERO = "0x0000000000000000000000000000000000000000"


def test_metadata(env: Any) -> None:
    token = env.token.functions
    assert token.name().call() == "ChargeNet Euro"
    assert token.symbol().call() == "cEUR"
    assert token.decimals().call() == 6
    assert token.escrow().call() == env.escrow.address
    assert token.admin().call() == env.admin
    assert token.isMinter(env.minter).call()


def test_mint_by_minter_only(env: Any) -> None:
    before = env.token.functions.totalSupply().call()
    receipt = env.send(env.token.functions.mint(env.stranger, 5_000_000), env.minter)
    assert env.balance_of(env.stranger) == 5_000_000
    assert env.token.functions.totalSupply().call() == before + 5_000_000
    (log,) = env.events(env.token, "Transfer", receipt)
    assert (log.args["from"], log.args["to"], log.args["value"]) == (ZERO, env.stranger, 5_000_000)
    env.fails(env.token.functions.mint(env.stranger, 1), env.stranger, "NotMinter")
    env.fails(env.token.functions.mint(ZERO, 1), env.minter, "ZeroAddress")


def test_supply_is_capped_at_uint128(env: Any) -> None:
    room = 2**128 - 1 - env.token.functions.totalSupply().call()
    env.fails(env.token.functions.mint(env.stranger, room + 1), env.minter, "SupplyCapExceeded")
    env.send(env.token.functions.mint(env.stranger, room), env.minter)
    assert env.balance_of(env.stranger) == room
    env.send(env.token.functions.transfer(env.cpo, room), env.stranger)


def test_transfer_approve_transfer_from(env: Any) -> None:
    token = env.token.functions
    env.send(token.mint(env.stranger, 100), env.minter)
    env.send(token.transfer(env.cpo, 30), env.stranger)
    assert (env.balance_of(env.stranger), env.balance_of(env.cpo)) == (70, 30)
    env.fails(
        token.transfer(env.cpo, 71), env.stranger, "InsufficientBalance", env.stranger, 70, 71
    )
    env.fails(token.transfer(ZERO, 1), env.stranger, "ZeroAddress")

    receipt = env.send(token.approve(env.relayer, 50), env.stranger)
    (log,) = env.events(env.token, "Approval", receipt)
    assert log.args["value"] == 50
    env.fails(
        token.transferFrom(env.stranger, env.cpo, 51),
        env.relayer,
        "InsufficientAllowance",
        env.relayer,
        50,
        51,
    )
    env.send(token.transferFrom(env.stranger, env.cpo, 20), env.relayer)
    assert token.allowance(env.stranger, env.relayer).call() == 30
    assert env.balance_of(env.cpo) == 50

    env.send(token.approve(env.relayer, 2**256 - 1), env.stranger)
    env.send(token.transferFrom(env.stranger, env.cpo, 10), env.relayer)
    assert token.allowance(env.stranger, env.relayer).call() == 2**256 - 1  # infinite stays


def test_permit_sets_allowance_once(env: Any) -> None:
    owner = env.drivers[0]
    signature = env.permit(owner, 1234, spender=env.relayer)
    call = env.token.functions.permit(owner.address, env.relayer, 1234, *signature.as_args())
    env.send(call, env.stranger)
    assert env.token.functions.allowance(owner.address, env.relayer).call() == 1234
    assert env.token.functions.nonces(owner.address).call() == 2  # one used in the fixture
    env.fails(call, env.stranger, "InvalidSignature")  # replay: the nonce moved on


def test_permit_rejects_expired_and_foreign_signatures(env: Any) -> None:
    owner = env.drivers[0]
    expired = env.permit(owner, 5, spender=env.relayer, deadline=env.now() - 1)
    env.fails(
        env.token.functions.permit(owner.address, env.relayer, 5, *expired.as_args()),
        env.stranger,
        "PermitExpired",
    )
    good = env.permit(owner, 5, spender=env.relayer)
    for owner_arg, spender, value in (
        (env.drivers[1].address, env.relayer, 5),  # someone else's tokens
        (owner.address, env.stranger, 5),  # another spender
        (owner.address, env.relayer, 6),  # another value
    ):
        env.fails(
            env.token.functions.permit(owner_arg, spender, value, *good.as_args()),
            env.stranger,
            "InvalidSignature",
        )
    other_chain = sign_permit(
        owner,
        chain_id=env.chain_id + 1,
        token=env.token.address,
        token_name="ChargeNet Euro",
        spender=env.relayer,
        value=5,
        nonce=env.token.functions.nonces(owner.address).call(),
        deadline=env.now() + 600,
    )
    env.fails(
        env.token.functions.permit(owner.address, env.relayer, 5, *other_chain.as_args()),
        env.stranger,
        "InvalidSignature",
    )
    assert env.token.functions.DOMAIN_SEPARATOR().call() != bytes(32)


def test_burn_from_needs_minter_and_allowance(env: Any) -> None:
    token = env.token.functions
    env.send(token.mint(env.cpo, 1_000), env.minter)
    env.fails(token.burnFrom(env.cpo, 10), env.minter, "InsufficientAllowance", env.minter, 0, 10)
    env.send(token.approve(env.minter, 600), env.cpo)
    env.fails(token.burnFrom(env.cpo, 10), env.stranger, "NotMinter")
    supply = token.totalSupply().call()
    receipt = env.send(token.burnFrom(env.cpo, 600), env.minter)
    assert env.balance_of(env.cpo) == 400
    assert token.totalSupply().call() == supply - 600
    (log,) = env.events(env.token, "Transfer", receipt)
    assert (log.args["to"], log.args["value"]) == (ZERO, 600)


def test_admin_manages_minters_and_hands_over(env: Any) -> None:
    token = env.token.functions
    env.fails(token.setMinter(env.stranger, True), env.stranger, "NotAdmin")
    env.send(token.setMinter(env.stranger, True), env.admin)
    env.send(token.mint(env.stranger, 1), env.stranger)
    env.send(token.setMinter(env.stranger, False), env.admin)
    env.fails(token.mint(env.stranger, 1), env.stranger, "NotMinter")
    env.fails(token.setMinter(ZERO, True), env.admin, "ZeroAddress")

    env.send(token.transferAdmin(env.stranger), env.admin)
    env.fails(token.setMinter(env.cpo, True), env.admin, "NotAdmin")
    env.send(token.transferAdmin(ZERO), env.stranger)  # renounced for good
    assert token.admin().call() == ZERO
    env.fails(token.setMinter(env.cpo, True), env.stranger, "NotAdmin")


def test_escrow_is_linked_once_and_its_hooks_are_escrow_only(env: Any) -> None:
    token = env.token.functions
    env.fails(token.setEscrow(env.stranger), env.admin, "EscrowAlreadySet")
    env.fails(token.setEscrow(env.stranger), env.stranger, "NotAdmin")
    victim = env.drivers[0]
    env.fails(token.escrowPull(victim.address, 1), env.stranger, "NotEscrow")
    signature = env.permit(victim, 1)
    env.fails(
        token.permitToEscrow(victim.address, 1, *signature.as_args()), env.stranger, "NotEscrow"
    )


def test_permit_to_escrow_moves_tokens_without_allowance(env: Any) -> None:
    driver = env.drivers[0]
    signature = env.permit(driver, 7_000_000)
    before = env.balance_of(driver.address)
    env.send(
        env.escrow.functions.depositWithPermit(driver.address, 7_000_000, *signature.as_args()),
        env.relayer,
    )
    assert env.balance_of(driver.address) == before - 7_000_000
    assert env.token.functions.allowance(driver.address, env.escrow.address).call() == 0


def test_fresh_token_rejects_a_zero_admin_and_a_zero_escrow(env: Any) -> None:
    artifact = load_artifact("ChargeToken")
    factory = env.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    tx = factory.constructor("X", "X", 6, ZERO).transact({"from": env.admin, "gas": 3_000_000})
    assert env.w3.eth.wait_for_transaction_receipt(tx)["status"] == 0
    token = deploy(env.w3, "ChargeToken", "X", "X", 6, env.admin, sender=env.admin)
    assert token.functions.escrow().call() == ZERO
    env.fails(token.functions.setEscrow(ZERO), env.admin, "ZeroAddress")


def test_the_money_invariant_notices_unaccounted_tokens(
    env: Any, check_money: Callable[[Any], None]
) -> None:
    tester = env.w3.provider.ethereum_tester
    snapshot = tester.take_snapshot()
    check_money(env)
    # Tokens sent straight to the escrow are in no deposit and no session.
    env.send(env.token.functions.mint(env.escrow.address, 1), env.minter)
    with pytest.raises(AssertionError):
        check_money(env)
    tester.revert_to_snapshot(snapshot)
