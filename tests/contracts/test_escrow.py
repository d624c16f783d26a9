"""ChargingEscrow: every function's success path and every revert the issue lists."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from chargenet.core.chain import (
    SessionState,
    deploy_chargenet,
    load_artifact,
    open_session_typed_data,
    send,
    session_id,
)

CDR = keccak(b"cdr: 21.4 kWh, 31.42 EUR incl. VAT")
AMOUNT = 31_420_000


def open_request(env: Any, driver: Any, nonce: int, **kwargs: Any) -> Any:
    return env.escrow.functions.openFromDeposit(env.authorise(driver, nonce, **kwargs).as_request())


# ---------------------------------------------------------------- deposits


def test_deposit_and_withdraw(env: Any) -> None:
    escrow, token = env.escrow.functions, env.token.functions
    env.send(token.mint(env.stranger, 10_000_000), env.minter)
    receipt = env.send(escrow.deposit(6_000_000), env.stranger)
    (log,) = env.events(env.escrow, "Deposited", receipt)
    assert (log.args["account"], log.args["amount"]) == (env.stranger, 6_000_000)
    assert env.deposit_of(env.stranger) == 6_000_000
    assert env.balance_of(env.stranger) == 4_000_000
    env.fails(escrow.deposit(0), env.stranger, "ZeroAmount")
    env.fails(escrow.deposit(4_000_001), env.stranger, "InsufficientBalance")

    receipt = env.send(escrow.withdraw(env.cpo, 2_500_000), env.stranger)
    (log,) = env.events(env.escrow, "Withdrawn", receipt)
    assert (log.args["account"], log.args["to"], log.args["amount"]) == (
        env.stranger,
        env.cpo,
        2_500_000,
    )
    assert env.deposit_of(env.stranger) == 3_500_000 and env.balance_of(env.cpo) == 2_500_000
    env.fails(
        escrow.withdraw(env.stranger, 3_500_001),
        env.stranger,
        "InsufficientDeposit",
        env.stranger,
        3_500_000,
        3_500_001,
    )
    env.fails(escrow.withdraw(env.stranger, 0), env.stranger, "ZeroAmount")
    env.fails(escrow.withdraw("0x" + "00" * 20, 1), env.stranger, "ZeroAddress")
    # To the escrow itself the tokens would belong to no balance, and nothing takes them out.
    env.fails(
        escrow.withdraw(env.escrow.address, 1),
        env.stranger,
        "InvalidRecipient",
        env.escrow.address,
    )


def test_deposit_with_permit_is_relayed_and_checked(env: Any) -> None:
    driver = env.drivers[0]
    before = env.deposit_of(driver.address)
    permit = env.permit(driver, 3_000_000)
    call = env.escrow.functions.depositWithPermit(driver.address, 3_000_000, *permit.as_args())
    receipt = env.send(call, env.relayer)
    (log,) = env.events(env.escrow, "Deposited", receipt)
    assert log.args["account"] == driver.address
    assert env.deposit_of(driver.address) == before + 3_000_000
    env.fails(call, env.relayer, "InvalidSignature")  # replayed permit
    expired = env.permit(driver, 1, deadline=env.now() - 1)
    env.fails(
        env.escrow.functions.depositWithPermit(driver.address, 1, *expired.as_args()),
        env.relayer,
        "PermitExpired",
    )
    env.fails(
        env.escrow.functions.depositWithPermit(driver.address, 0, *permit.as_args()),
        env.relayer,
        "ZeroAmount",
    )


# ---------------------------------------------------------------- open


def test_open_from_deposit_locks_the_maximum(env: Any) -> None:
    driver = env.drivers[0]
    before = env.deposit_of(driver.address)
    auth = env.authorise(driver, 1)
    receipt = env.send(env.escrow.functions.openFromDeposit(auth.as_request()), env.relayer)
    (log,) = env.events(env.escrow, "SessionOpened", receipt)
    index = env.registry.functions.indexOf(env.STATION).call()
    assert dict(log.args) == {
        "sessionId": auth.session_id,
        "driver": driver.address,
        "stationId": env.STATION,
        "stationIndex": index,
        "maximum": env.MAXIMUM,
        "expiry": auth.expiry,
        "viaPermit": False,
    }
    assert env.deposit_of(driver.address) == before - env.MAXIMUM
    assert env.escrow.functions.sessionOf(auth.session_id).call() == [
        SessionState.OPEN,
        driver.address,
        index,
        env.MAXIMUM,
        auth.expiry,
    ]
    assert env.escrow.functions.lastNonceOf(driver.address).call() == 1


def test_open_rejects_a_retired_or_unknown_station(env: Any) -> None:
    driver = env.drivers[0]
    env.send(env.registry.functions.retire(env.STATION), env.cpo)
    env.fails(open_request(env, driver, 1), env.relayer, "StationRetiredError", env.STATION)
    unknown = b"XX*NOPE".ljust(32, b"\0")
    env.fails(open_request(env, driver, 1, station=unknown), env.relayer, "UnknownStation")


def test_open_rejects_bad_terms(env: Any) -> None:
    driver = env.drivers[0]
    deposit = env.deposit_of(driver.address)
    env.fails(open_request(env, driver, 1, expiry=env.now() - 1), env.relayer, "ExpiryNotInFuture")
    env.fails(
        open_request(env, driver, 1, maximum=deposit + 1),
        env.relayer,
        "InsufficientDeposit",
        driver.address,
        deposit,
        deposit + 1,
    )
    auth = env.authorise(driver, 1)
    zero_maximum = (auth.session_id, auth.station_id, 0, auth.expiry, auth.r, auth.vs)
    env.fails(env.escrow.functions.openFromDeposit(zero_maximum), env.relayer, "InvalidSignature")


def test_open_rejects_tampered_or_foreign_signatures(env: Any) -> None:
    driver, other = env.drivers[0], env.drivers[1]
    auth = env.authorise(driver, 1)
    sid, station, maximum, expiry, r, vs = auth.as_request()
    for tampered in (
        (sid, env.STATION_2, maximum, expiry, r, vs),  # another station
        (sid, station, maximum + 1, expiry, r, vs),  # a higher maximum
        (sid, station, maximum, expiry + 1, r, vs),  # a later expiry
        (session_id(driver.address, 2), station, maximum, expiry, r, vs),  # another session
        (session_id(other.address, 1), station, maximum, expiry, r, vs),  # another driver
        (sid, station, maximum, expiry, r, bytes([vs[0] ^ 0x80]) + vs[1:]),  # flipped parity
    ):
        env.fails(env.escrow.functions.openFromDeposit(tampered), env.relayer, "InvalidSignature")
    # Someone else's key cannot open a session in the driver's name.
    forged = env.authorise(other, 1)
    request = (sid, *forged.as_request()[1:])
    env.fails(env.escrow.functions.openFromDeposit(request), env.relayer, "InvalidSignature")
    # The malleable twin (s' = n - s) is rejected too.
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    raw_vs = int.from_bytes(vs, "big")
    parity, s = raw_vs >> 255, raw_vs & (2**255 - 1)
    twin = (((parity ^ 1) << 255) | (n - s)).to_bytes(32, "big")
    env.fails(
        env.escrow.functions.openFromDeposit((sid, station, maximum, expiry, r, twin)),
        env.relayer,
        "InvalidSignature",
    )


def test_signatures_do_not_cross_chains_or_deployments(env: Any) -> None:
    driver = env.drivers[0]
    other_chain = env.authorise(driver, 1, chain_id=env.chain_id + 1)
    env.fails(
        env.escrow.functions.openFromDeposit(other_chain.as_request()),
        env.relayer,
        "InvalidSignature",
    )
    other_escrow = env.authorise(driver, 1, escrow=env.stranger)
    env.fails(
        env.escrow.functions.openFromDeposit(other_escrow.as_request()),
        env.relayer,
        "InvalidSignature",
    )
    # A signature for this deployment is worthless on a second one with identical state.
    second = deploy_chargenet(env.w3, admin=env.admin, minter=env.minter)
    env.send(second.registry.functions.register(env.STATION, env.INFO.as_tuple(), []), env.cpo)
    env.send(second.token.functions.mint(env.stranger, 1), env.minter)  # keeps supply nonzero
    ours = env.authorise(driver, 1)
    env.fails(
        second.escrow.functions.openFromDeposit(ours.as_request()), env.relayer, "InvalidSignature"
    )


def test_session_ids_are_never_reused(env: Any) -> None:
    driver = env.drivers[0]
    auth = env.open(driver, 3)
    replay = env.escrow.functions.openFromDeposit(auth.as_request())
    env.fails(replay, env.relayer, "SessionIdUsed", auth.session_id, 3)  # while open
    env.send(env.escrow.functions.settle(auth.session_id, AMOUNT, CDR), env.cpo)
    env.fails(replay, env.relayer, "SessionIdUsed", auth.session_id, 3)  # after settlement
    # A fresh signature over the same id, or over a lower nonce, cannot open either.
    env.fails(open_request(env, driver, 3, maximum=1), env.relayer, "SessionIdUsed")
    env.fails(open_request(env, driver, 2), env.relayer, "SessionIdUsed")
    assert env.state(auth.session_id) == SessionState.CLOSED
    assert env.state(session_id(driver.address, 2)) == SessionState.CLOSED  # skipped: void
    assert env.state(session_id(driver.address, 4)) == SessionState.UNUSED


def test_an_open_session_is_never_overwritten(env: Any) -> None:
    driver = env.drivers[0]
    ring = env.escrow.functions.RING_SIZE().call()
    first = env.open(driver, 1)
    env.fails(open_request(env, driver, 1 + ring), env.relayer, "SessionSlotBusy")
    env.send(env.escrow.functions.settle(first.session_id, AMOUNT, CDR), env.cpo)
    reuse = env.open(driver, 1 + ring)  # the closed session's slot is reused
    assert env.state(reuse.session_id) == SessionState.OPEN
    assert env.state(first.session_id) == SessionState.CLOSED


def ring_words(env: Any, account: str) -> list[int]:
    """The raw storage words of ``account``'s session ring, read from the storage layout."""
    layout = load_artifact("ChargingEscrow").storage_layout
    slot = int(next(s for s in layout["storage"] if s["label"] == "_sessions")["slot"])
    key = bytes(12) + bytes.fromhex(account[2:]) + slot.to_bytes(32, "big")
    base = int.from_bytes(keccak(key), "big")
    ring = env.escrow.functions.RING_SIZE().call()
    return [
        int.from_bytes(env.w3.eth.get_storage_at(env.escrow.address, base + i), "big")
        for i in range(ring)
    ]


def test_first_deposit_allocates_the_ring_so_first_sessions_cost_the_same(env: Any) -> None:
    driver = Account.from_key(keccak(text="driver on its first top-up"))
    env.send(env.token.functions.mint(driver.address, 2 * env.TOP_UP), env.minter)
    assert ring_words(env, driver.address) == [0] * len(ring_words(env, driver.address))
    permit = env.permit(driver, env.TOP_UP)
    deposit = env.escrow.functions.depositWithPermit(driver.address, env.TOP_UP, *permit.as_args())
    first = env.send(deposit, env.relayer)["gasUsed"]
    markers = ring_words(env, driver.address)
    assert all(markers) and len(set(markers)) == 1  # one closed marker in every slot
    # The marker matches no session id: every id still reads as unused.
    for nonce in range(1, len(markers) + 1):
        assert env.state(session_id(driver.address, nonce)) == SessionState.UNUSED
    permit = env.permit(driver, env.TOP_UP)
    deposit = env.escrow.functions.depositWithPermit(driver.address, env.TOP_UP, *permit.as_args())
    later = env.send(deposit, env.relayer)["gasUsed"]
    assert ring_words(env, driver.address) == markers
    # Allocation happens once: 20,000 per word more than a later deposit writes.
    assert first - later > 20_000 * len(markers)

    gas = []
    for nonce in range(1, 2 * len(markers) + 1):
        auth = env.authorise(driver, nonce)
        receipt = env.send(env.escrow.functions.openFromDeposit(auth.as_request()), env.relayer)
        env.send(env.escrow.functions.settle(auth.session_id, AMOUNT, CDR), env.cpo)
        gas.append(receipt["gasUsed"])
    # A first session in a slot costs what a reuse of that slot does (no zero-to-non-zero
    # store, which would add 17,100); only calldata bytes of the signatures differ.
    for first_use, reuse in zip(gas[: len(markers)], gas[len(markers) :], strict=True):
        assert abs(first_use - reuse) < 1_000, gas


def test_first_deposit_keeps_a_session_opened_by_permit(env: Any) -> None:
    driver = Account.from_key(keccak(text="driver who opened by permit first"))
    env.send(env.token.functions.mint(driver.address, 2 * env.TOP_UP), env.minter)
    auth = env.authorise(driver, 1)
    permit = env.permit(driver, env.MAXIMUM)
    env.send(env.escrow.functions.openWithPermit(auth.as_request(), *permit.as_args()), env.relayer)
    opened = ring_words(env, driver.address)[1]
    permit = env.permit(driver, env.TOP_UP)
    env.send(
        env.escrow.functions.depositWithPermit(driver.address, env.TOP_UP, *permit.as_args()),
        env.relayer,
    )
    words = ring_words(env, driver.address)
    assert words[1] == opened and all(words) and env.state(auth.session_id) == SessionState.OPEN
    ring = len(words)
    env.fails(open_request(env, driver, 1 + ring), env.relayer, "SessionSlotBusy")
    env.send(env.escrow.functions.settle(auth.session_id, AMOUNT, CDR), env.cpo)
    env.open(driver, 1 + ring)
    assert env.deposit_of(driver.address) == env.TOP_UP + env.MAXIMUM - AMOUNT - env.MAXIMUM


def test_malformed_session_ids_are_rejected(env: Any) -> None:
    driver = env.drivers[0].address
    raw = int(driver, 16) << 96
    for bad in (raw, raw | 2**64, 5):  # nonce 0, nonce >= 2^64, no driver
        sid = bad.to_bytes(32, "big")
        request = (sid, env.STATION, 1, env.now() + 60, bytes(32), bytes(32))
        env.fails(env.escrow.functions.openFromDeposit(request), env.relayer, "InvalidSessionId")
        env.fails(env.escrow.functions.settle(sid, 0, CDR), env.cpo, "InvalidSessionId")


def test_open_with_permit_needs_no_deposit(env: Any) -> None:
    driver = env.drivers[1]
    deposit, tokens = env.deposit_of(driver.address), env.balance_of(driver.address)
    auth = env.authorise(driver, 1)
    permit = env.permit(driver, env.MAXIMUM)
    call = env.escrow.functions.openWithPermit(auth.as_request(), *permit.as_args())
    receipt = env.send(call, env.relayer)
    (log,) = env.events(env.escrow, "SessionOpened", receipt)
    assert log.args["viaPermit"] is True
    assert env.balance_of(driver.address) == tokens - env.MAXIMUM
    assert env.deposit_of(driver.address) == deposit
    assert env.token.functions.allowance(driver.address, env.escrow.address).call() == 0
    env.send(env.escrow.functions.settle(auth.session_id, AMOUNT, CDR), env.cpo)
    # What the session did not use goes back to the driver's escrow balance.
    assert env.deposit_of(driver.address) == deposit + env.MAXIMUM - AMOUNT


def test_open_with_permit_rejects_an_expired_or_wrong_permit(env: Any) -> None:
    driver = env.drivers[1]
    auth = env.authorise(driver, 1)
    expired = env.permit(driver, env.MAXIMUM, deadline=env.now() - 1)
    env.fails(
        env.escrow.functions.openWithPermit(auth.as_request(), *expired.as_args()),
        env.relayer,
        "PermitExpired",
    )
    too_small = env.permit(driver, env.MAXIMUM - 1)
    env.fails(
        env.escrow.functions.openWithPermit(auth.as_request(), *too_small.as_args()),
        env.relayer,
        "InvalidSignature",
    )
    assert env.state(auth.session_id) == SessionState.UNUSED


def test_open_with_permit_survives_a_front_run_permit(env: Any) -> None:
    driver = env.drivers[1]
    auth = env.authorise(driver, 1)
    permit = env.permit(driver, env.MAXIMUM)
    # A griefer spends the permit through the token's plain permit() first.
    env.send(
        env.token.functions.permit(
            driver.address, env.escrow.address, env.MAXIMUM, *permit.as_args()
        ),
        env.stranger,
    )
    env.send(env.escrow.functions.openWithPermit(auth.as_request(), *permit.as_args()), env.relayer)
    assert env.state(auth.session_id) == SessionState.OPEN
    assert env.token.functions.allowance(driver.address, env.escrow.address).call() == 0


def test_open_batch_opens_all_or_none(env: Any) -> None:
    auths = [
        env.authorise(driver, 1, station=station)
        for driver, station in zip(
            env.drivers, (env.STATION, env.STATION, env.STATION_2), strict=True
        )
    ]
    requests = [a.as_request() for a in auths]
    bad = env.authorise(env.drivers[0], 2, station=env.OTHER_CPO_STATION, expiry=env.now() - 5)
    env.fails(
        env.escrow.functions.openBatch([*requests, bad.as_request()]),
        env.relayer,
        "ExpiryNotInFuture",
    )
    assert all(env.state(a.session_id) == SessionState.UNUSED for a in auths)
    receipt = env.send(env.escrow.functions.openBatch(requests), env.relayer)
    assert len(env.events(env.escrow, "SessionOpened", receipt)) == 3
    assert all(env.state(a.session_id) == SessionState.OPEN for a in auths)
    env.fails(env.escrow.functions.openBatch([]), env.relayer, "EmptyBatch")
    env.fails(env.escrow.functions.openBatch(requests[:1]), env.relayer, "SessionIdUsed")


# ---------------------------------------------------------------- settle, cancel, refund


@pytest.mark.parametrize("settler", ["cpo", "operator"])
def test_settle_pays_the_cpo_and_returns_the_rest(env: Any, settler: str) -> None:
    driver = env.drivers[0]
    auth = env.open(driver, 1)
    deposit, earned = env.deposit_of(driver.address), env.deposit_of(env.cpo)
    receipt = env.send(
        env.escrow.functions.settle(auth.session_id, AMOUNT, CDR), getattr(env, settler)
    )
    (log,) = env.events(env.escrow, "SessionSettled", receipt)
    assert dict(log.args) == {
        "sessionId": auth.session_id,
        "cpo": env.cpo,
        "driver": driver.address,
        "stationIndex": env.registry.functions.indexOf(env.STATION).call(),
        "amount": AMOUNT,
        "returned": env.MAXIMUM - AMOUNT,
        "cdrHash": CDR,
    }
    assert env.deposit_of(env.cpo) == earned + AMOUNT
    assert env.deposit_of(driver.address) == deposit + env.MAXIMUM - AMOUNT
    assert env.state(auth.session_id) == SessionState.CLOSED
    # The CPO takes its earnings out as tokens (e.g. for the MSP to burn on payout).
    env.send(env.escrow.functions.withdraw(env.cpo, AMOUNT), env.cpo)
    assert env.balance_of(env.cpo) == AMOUNT


def test_settle_reverts_for_strangers_excess_and_repeats(env: Any) -> None:
    auth = env.open(env.drivers[0], 1)
    settle = env.escrow.functions.settle
    for intruder in (env.stranger, env.other_cpo, env.relayer):
        env.fails(
            settle(auth.session_id, AMOUNT, CDR),
            intruder,
            "NotStationOperator",
            auth.session_id,
            intruder,
        )
    env.fails(
        settle(auth.session_id, env.MAXIMUM + 1, CDR),
        env.cpo,
        "AmountAboveMaximum",
        auth.session_id,
        env.MAXIMUM + 1,
        env.MAXIMUM,
    )
    # The CDR's hash is what the record is checked against later: a settlement carries one.
    env.fails(settle(auth.session_id, 1, b"\0" * 32), env.cpo, "MissingCdrHash", auth.session_id)
    env.send(settle(auth.session_id, env.MAXIMUM, CDR), env.cpo)  # exactly the maximum is fine
    env.fails(settle(auth.session_id, 1, CDR), env.cpo, "SessionNotOpen", auth.session_id)
    never = session_id(env.drivers[1].address, 7)
    env.fails(settle(never, 1, CDR), env.cpo, "SessionNotOpen", never)


def test_sessions_at_a_retired_station_still_settle(env: Any) -> None:
    auth = env.open(env.drivers[0], 1)
    env.send(env.registry.functions.retire(env.STATION), env.cpo)
    env.send(env.escrow.functions.settle(auth.session_id, 0, CDR), env.operator)
    assert env.state(auth.session_id) == SessionState.CLOSED


def test_cpo_may_settle_after_expiry_until_someone_refunds(env: Any) -> None:
    auth = env.open(env.drivers[0], 1, expiry=env.now() + 100)
    env.travel(200)
    env.send(env.escrow.functions.settle(auth.session_id, AMOUNT, CDR), env.cpo)
    env.fails(env.escrow.functions.refund(auth.session_id), env.stranger, "SessionNotOpen")


def test_cancel_returns_everything_before_settlement(env: Any) -> None:
    driver = env.drivers[0]
    deposit = env.deposit_of(driver.address)
    auth = env.open(driver, 1)
    cancel = env.escrow.functions.cancel(auth.session_id)
    env.fails(cancel, env.stranger, "NotStationOperator", auth.session_id, env.stranger)
    receipt = env.send(cancel, env.operator)
    (log,) = env.events(env.escrow, "SessionCancelled", receipt)
    assert (log.args["driver"], log.args["by"], log.args["amount"]) == (
        driver.address,
        env.operator,
        env.MAXIMUM,
    )
    assert env.deposit_of(driver.address) == deposit
    env.fails(cancel, env.cpo, "SessionNotOpen")
    env.fails(env.escrow.functions.settle(auth.session_id, 1, CDR), env.cpo, "SessionNotOpen")


def test_refund_only_after_expiry_to_the_driver(env: Any) -> None:
    driver = env.drivers[0]
    deposit = env.deposit_of(driver.address)
    auth = env.open(driver, 1, expiry=env.now() + 600)
    refund = env.escrow.functions.refund(auth.session_id)
    env.fails(refund, env.stranger, "NotExpired", auth.session_id, auth.expiry)
    env.travel(601)
    receipt = env.send(refund, env.stranger)  # anyone may trigger it; the driver gets it
    (log,) = env.events(env.escrow, "SessionRefunded", receipt)
    assert (log.args["driver"], log.args["amount"]) == (driver.address, env.MAXIMUM)
    assert env.deposit_of(driver.address) == deposit
    assert env.deposit_of(env.stranger) == 0
    env.fails(refund, env.stranger, "SessionNotOpen")
    env.fails(env.escrow.functions.settle(auth.session_id, 1, CDR), env.cpo, "SessionNotOpen")


def test_settle_batch_credits_each_cpo_and_is_atomic(env: Any) -> None:
    # The shared operator key acts for both CPOs' stations.
    env.send(
        env.registry.functions.setOperator(env.OTHER_CPO_STATION, env.operator, True),
        env.other_cpo,
    )
    env.send(env.registry.functions.setOperator(env.STATION_2, env.operator, True), env.cpo)
    stations = (env.STATION, env.OTHER_CPO_STATION, env.STATION_2)
    auths = [
        env.open(driver, 1, station=station)
        for driver, station in zip(env.drivers, stations, strict=True)
    ]
    auths.append(env.open(env.drivers[0], 2, station=env.STATION))
    amounts = [AMOUNT, 1_000_000, 0, env.MAXIMUM]
    requests = [(a.session_id, m, CDR) for a, m in zip(auths, amounts, strict=True)]
    before = {a: env.deposit_of(a) for a in (env.cpo, env.other_cpo)}

    env.fails(env.escrow.functions.settleBatch(requests), env.cpo, "NotStationOperator")
    over = [*requests[:3], (auths[3].session_id, env.MAXIMUM + 1, CDR)]
    env.fails(env.escrow.functions.settleBatch(over), env.operator, "AmountAboveMaximum")
    twice = [*requests, requests[0]]
    env.fails(env.escrow.functions.settleBatch(twice), env.operator, "SessionNotOpen")
    unhashed = [*requests[:3], (auths[3].session_id, 1, b"\0" * 32)]
    env.fails(env.escrow.functions.settleBatch(unhashed), env.operator, "MissingCdrHash")
    env.fails(env.escrow.functions.settleBatch([]), env.operator, "EmptyBatch")
    assert all(env.state(a.session_id) == SessionState.OPEN for a in auths)

    receipt = env.send(env.escrow.functions.settleBatch(requests), env.operator)
    logs = env.events(env.escrow, "SessionSettled", receipt)
    assert [log.args["cpo"] for log in logs] == [env.cpo, env.other_cpo, env.cpo, env.cpo]
    assert env.deposit_of(env.cpo) == before[env.cpo] + AMOUNT + env.MAXIMUM
    assert env.deposit_of(env.other_cpo) == before[env.other_cpo] + 1_000_000
    assert all(env.state(a.session_id) == SessionState.CLOSED for a in auths)


# ---------------------------------------------------------------- nonces and reads


def test_bump_nonce_voids_outstanding_authorisations(env: Any) -> None:
    driver = Account.from_key(keccak(text="driver with a little ether"))
    env.w3.eth.send_transaction({"from": env.admin, "to": driver.address, "value": 10**17})
    env.send(env.token.functions.mint(driver.address, 100_000_000), env.minter)
    # A first deposit also allocates the session ring (8 fresh storage words).
    send(env.w3, env.escrow.functions.deposit(100_000_000), driver, gas=400_000)
    pending = env.authorise(driver, 5)
    receipt = send(env.w3, env.escrow.functions.bumpNonce(5), driver, gas=100_000)
    (log,) = env.events(env.escrow, "NonceBumped", receipt)
    assert log.args["lastNonce"] == 5
    env.fails(
        env.escrow.functions.openFromDeposit(pending.as_request()),
        env.relayer,
        "SessionIdUsed",
        pending.session_id,
        5,
    )
    with env.reverts("NonceNotIncreasing", 5, 5):
        env.escrow.functions.bumpNonce(5).call({"from": driver.address})
    env.open(driver, 6)


def test_reads_match_the_python_helpers(env: Any) -> None:
    escrow = env.escrow.functions
    driver = env.drivers[2]
    assert escrow.sessionIdFor(driver.address, 42).call() == session_id(driver.address, 42)
    fields, name, version, chain_id, contract, salt, extensions = escrow.eip712Domain().call()
    assert (fields, name, version, chain_id, contract, salt, extensions) == (
        b"\x0f",
        "ChargeNet Escrow",
        "1",
        env.chain_id,
        env.escrow.address,
        bytes(32),
        [],
    )
    message = open_session_typed_data(
        chain_id=env.chain_id,
        escrow=env.escrow.address,
        session=session_id(driver.address, 1),
        station_id=env.STATION,
        maximum=1,
        expiry=2,
    )
    assert escrow.domainSeparator().call() == encode_typed_data(full_message=message).header
    assert escrow.OPEN_SESSION_TYPEHASH().call() == keccak(
        text="OpenSession(bytes32 sessionId,bytes32 stationId,uint96 maximum,uint40 expiry,"
        "uint64 nonce)"
    )
    assert escrow.token().call() == env.token.address
    assert escrow.registry().call() == env.registry.address
