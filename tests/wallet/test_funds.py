"""Top-ups (idempotent by payment reference: one capture, one mint, exact balances), history, and
payouts (withdraw + permit + burnFrom, idempotent by payout reference)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from chargenet.wallet.funds import Funds
from tests.wallet.harness import Driver, World

EUR = 1_000_000


def mints_to(env: World, address: str) -> list[Any]:
    token = env.deployment.token
    logs = token.events.Transfer().get_logs(
        from_block=0, argument_filters={"from": "0x" + "00" * 20, "to": address}
    )
    return list(logs)


def test_same_payment_reference_mints_once(env: World) -> None:
    driver = env.driver()
    supply = env.supply()
    first = env.top_up(driver, 25 * EUR, reference="pay-ref-1")
    again = env.top_up(driver, 25 * EUR, reference="pay-ref-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["status"] == "deposited"
    assert again.json() == first.json()  # the same mint and deposit transactions
    assert len(mints_to(env, driver.address)) == 1
    assert env.deposit(driver.address) == 25 * EUR
    assert env.token_balance(driver.address) == 0
    assert env.supply() - supply == 25 * EUR
    assert env.payments.captured["pay-ref-1"].amount == 25 * EUR

    wallet = env.wallet.get("/v1/wallet", headers=driver.headers).json()
    assert (wallet["token_balance"], wallet["deposit"], wallet["total"]) == (0, 25 * EUR, 25 * EUR)

    other_amount = env.top_up(driver, 26 * EUR, reference="pay-ref-1")
    assert other_amount.status_code == 409
    someone_else = env.driver()
    assert env.top_up(someone_else, 25 * EUR, reference="pay-ref-1").status_code == 409
    assert env.deposit(someone_else.address) == 0
    lookup = env.wallet.get("/v1/wallet/topups/pay-ref-1", headers=driver.headers)
    assert lookup.json()["status"] == "deposited"
    hidden = env.wallet.get("/v1/wallet/topups/pay-ref-1", headers=someone_else.headers)
    assert hidden.status_code == 404


def test_concurrent_top_ups_with_one_reference_mint_once(env: World) -> None:
    driver = env.driver()
    answers: list[Any] = []

    def go() -> None:
        answers.append(env.top_up(driver, 3 * EUR, reference="pay-race"))

    threads = [threading.Thread(target=go) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert len(mints_to(env, driver.address)) == 1
    assert env.deposit(driver.address) == 3 * EUR


def test_top_ups_add_up_and_show_in_history(env: World) -> None:
    driver = env.driver()
    for n, amount in enumerate((1 * EUR, 2_500_000, 7)):
        assert (
            env.top_up(driver, amount, reference=f"hist-{driver.driver_id}-{n}").status_code == 201
        )
    assert env.deposit(driver.address) == 3_500_007
    history = env.wallet.get("/v1/wallet/history", headers=driver.headers).json()["entries"]
    deposited = [e for e in history if e["event"] == "Deposited"]
    assert sorted(int(e["args"]["amount"]) for e in deposited) == [7, 1 * EUR, 2_500_000]
    minted = [e for e in history if e["event"] == "Transfer" and e["args"]["to"] == driver.address]
    assert len(minted) == 3
    # Newest first.
    assert [e["block"] for e in history] == sorted((e["block"] for e in history), reverse=True)


def test_bad_top_ups_are_refused(env: World) -> None:
    driver = env.driver()
    for body in (
        {"payment_reference": "ok-ref", "amount": 0},
        {"payment_reference": "ok-ref", "amount": -5},
        {"payment_reference": "has space", "amount": 5},
        {"payment_reference": "ok-ref", "amount": 2**63},
        {"payment_reference": "ok-ref"},
    ):
        answer = env.wallet.post("/v1/wallet/topups", json=body, headers=driver.headers)
        assert answer.status_code == 422, body
    assert env.deposit(driver.address) == 0
    assert (
        env.wallet.post(
            "/v1/wallet/topups", json={"payment_reference": "x", "amount": 1}
        ).status_code
        == 401
    )


def test_amounts_must_be_json_integers(env: World) -> None:
    """Money is an integer of token base units: a float was rounded (9007199254740993.0 topped
    up 9007199254740992) and a string taken as a number. Refused with a reason, nothing kept:
    the reference still takes the same request with an integer."""
    driver = env.driver()
    assert env.top_up(driver, 10 * EUR).status_code == 201
    supply = env.supply()
    for amount in ("9007199254740993.0", "5000000.0", '"5000000"', "true"):
        for path, reference in (("topups", "payment_reference"), ("payouts", "payout_reference")):
            answer = env.wallet.post(
                f"/v1/wallet/{path}",
                content=f'{{"{reference}": "strict-{path}", "amount": {amount}}}',
                headers={**driver.headers, "content-type": "application/json"},
            )
            assert answer.status_code == 422, (path, amount, answer.text)
            [error] = answer.json()["errors"]
            assert error["loc"] == ["body", "amount"], error
            assert error["msg"] == "Input should be a valid integer", error
            assert answer.json()["detail"] == "body.amount: Input should be a valid integer"
    assert env.supply() == supply and env.deposit(driver.address) == 10 * EUR
    assert "strict-topups" not in env.payments.captured
    assert "strict-payouts" not in env.payments.paid_out

    assert env.top_up(driver, 5 * EUR, reference="strict-topups").status_code == 201
    body = {"payout_reference": "strict-payouts", "amount": 3 * EUR}
    assert env.wallet.post("/v1/wallet/payouts", json=body, headers=driver.headers).is_success
    assert env.deposit(driver.address) == 12 * EUR


def test_payout_burns_exactly_once(env: World) -> None:
    driver: Driver = env.driver()
    assert env.top_up(driver, 10 * EUR).status_code == 201
    supply = env.supply()
    body = {"payout_reference": "out-1", "amount": 4 * EUR}
    first = env.wallet.post("/v1/wallet/payouts", json=body, headers=driver.headers)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "paid"
    again = env.wallet.post("/v1/wallet/payouts", json=body, headers=driver.headers)
    assert again.json() == first.json()
    assert env.supply() == supply - 4 * EUR
    assert env.deposit(driver.address) == 6 * EUR
    assert env.token_balance(driver.address) == 0
    assert env.payments.paid_out["out-1"] == (driver.driver_id, 4 * EUR)

    too_much = env.wallet.post(
        "/v1/wallet/payouts",
        json={"payout_reference": "out-2", "amount": 6 * EUR + 1},
        headers=driver.headers,
    )
    assert too_much.status_code == 422
    assert (
        too_much.json()["detail"]
        == f"amount: {6 * EUR + 1} is above the available balance of {6 * EUR}"
    )
    assert env.supply() == supply - 4 * EUR


def test_ops_routes(env: World) -> None:
    assert env.top_up(env.driver(), EUR).status_code == 201
    assert env.wallet.get("/healthz").json() == {"status": "ok"}
    ready = env.wallet.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == ["chain", "database", "registry"]
    metrics = env.wallet.get("/metrics").text
    assert 'chargenet_wallet_topups_total{outcome="deposited"}' in metrics
    assert "chargenet_wallet_operation_seconds_bucket" in metrics


def test_one_reference_on_two_replicas_at_once_is_one_top_up(
    env: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference lock is per process: two replicas both find no top-up, both capture (the
    provider is idempotent by reference) and both insert. The second insert met the first's
    row and answered 500; it now carries on with that row."""
    app_state = env.wallet.app.state  # type: ignore[attr-defined]
    funds: Funds = app_state.funds
    replica = Funds(env.settings, funds.db, funds.signer, funds.chain, funds.provider)
    driver = env.driver()
    account = app_state.accounts.find(driver.driver_id)
    both_captured = threading.Barrier(2)
    capture = env.payments.capture

    def capture_together(*args: Any) -> Any:
        both_captured.wait(timeout=10)
        return capture(*args)

    monkeypatch.setattr(env.payments, "capture", capture_together)
    answers: list[Any] = []

    def top_up(on: Funds) -> None:
        try:
            answers.append(on.top_up(account, "pay-two-replicas", 3 * EUR))
        except Exception as error:  # reported below, not lost in the thread
            answers.append(error)

    threads = [threading.Thread(target=top_up, args=(f,)) for f in (funds, replica)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [getattr(a, "status", a) for a in answers] == ["deposited", "deposited"]
    assert len(mints_to(env, driver.address)) == 1
    assert env.deposit(driver.address) == 3 * EUR
