"""The signer against the real Hardhat node: load, idempotency, refusals, reverts, fee bumps."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from grpc_health.v1 import health_pb2, health_pb2_grpc
from web3 import Web3

from chargenet.core.signer_client import SignerClient, SignerError, Transaction, TxStatus
from chargenet.signer import tracker
from tests.signer.harness import (
    OTHER_TOKEN,
    PROBE,
    TOKEN,
    InProcessSigner,
    fresh_keys,
    inprocess_signer,
    probe_contract,
    rpc,
    send_from,
    signer_env,
)

pytestmark = pytest.mark.hardhat
TAG = b"\x07" * 32


@pytest.fixture
def signer(
    w3: Web3, probe: str, rpc_url: str, tmp_path: Path
) -> Iterator[tuple[InProcessSigner, list[str]]]:
    keys = fresh_keys(w3, 2)
    env = signer_env(f"sqlite:///{tmp_path}/signer.db", keys, probe, rpc_url)
    with inprocess_signer(env) as running:
        yield running, [k.address for k in keys]


def check_ledger(w3: Web3, probe: str, txs: list[Transaction], addresses: list[str]) -> None:
    """Every transaction mined once: per account nonces 0..n-1, distinct hashes, and the
    contract's own counter equal to the number of calls (a duplicate would count twice)."""
    assert all(t.status in (TxStatus.MINED, TxStatus.FINAL) for t in txs), Counter(
        t.status for t in txs
    )
    assert len({t.tx_hash for t in txs}) == len(txs)
    contract = probe_contract(w3, probe)
    for address in addresses:
        nonces = sorted(t.nonce for t in txs if t.from_address == address if t.nonce is not None)
        assert nonces == list(range(len(nonces))), "nonce gap or reuse"
        assert w3.eth.get_transaction_count(Web3.to_checksum_address(address)) == len(nonces)
        assert contract.functions.counts(address).call() == len(nonces)


def test_four_callers_500_each_two_accounts(
    w3: Web3, probe: str, signer: tuple[InProcessSigner, list[str]]
) -> None:
    running, addresses = signer
    per_caller = 500

    def caller(index: int) -> list[Transaction]:
        with SignerClient(running.url, TOKEN) as client:
            return [
                client.send_transaction(
                    f"load-{index}-{n}", f"k{n % 2}", "bump", [1, TAG], contract="Probe"
                )
                for n in range(per_caller)
            ]

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        sent = [tx for batch in pool.map(caller, range(4)) for tx in batch]
    with SignerClient(running.url, TOKEN) as client:
        done = client.wait([t.idempotency_key for t in sent], timeout=300)
    elapsed = time.perf_counter() - started
    print(
        f"\n2000 transactions from 4 callers, 2 accounts: all mined in {elapsed:.1f}s "
        f"({len(done) / elapsed:.1f} tx/s)"
    )
    assert len(done) == 4 * per_caller
    check_ledger(w3, probe, list(done.values()), addresses)


def test_same_idempotency_key_gives_one_transaction(
    w3: Web3, probe: str, signer: tuple[InProcessSigner, list[str]]
) -> None:
    running, addresses = signer
    with SignerClient(running.url, TOKEN) as client:
        # Concurrently (in flight together) and again afterwards.
        with ThreadPoolExecutor(4) as pool:
            first = list(
                pool.map(
                    lambda _: client.send_transaction(
                        "once", "k0", "bump", [1, TAG], contract="Probe"
                    ),
                    range(4),
                )
            )
        later = client.send_transaction("once", "k0", "bump", [1, TAG], contract="Probe")
        assert len({t.tx_hash for t in [*first, later]}) == 1
        assert sum(t.created for t in first) == 1 and not later.created
        client.wait(["once"])
        with pytest.raises(SignerError) as caught:
            client.send_transaction("once", "k0", "bump", [2, TAG], contract="Probe")
        assert caught.value.code is grpc.StatusCode.ALREADY_EXISTS
    contract = probe_contract(w3, probe)
    assert contract.functions.counts(addresses[0]).call() == 1


def test_revert_reasons(signer: tuple[InProcessSigner, list[str]]) -> None:
    running, _ = signer
    with SignerClient(running.url, TOKEN) as client:
        # The estimate reverts: refused before signing, no nonce used.
        refused = client.send_transaction("zero", "k0", "bump", [0, TAG], contract="Probe")
        assert refused.status is TxStatus.FAILED and refused.nonce is None
        assert refused.revert_reason == "SignerProbe: amount is zero"
        # With a gas limit there is no estimate: mined, reverted, reason from a replay.
        mined = client.send_transaction(
            "zero-mined", "k0", "bump", [0, TAG], contract="Probe", gas_limit=100_000
        )
        custom = client.send_transaction(
            "too-large", "k0", "bump", [5000, TAG], contract="Probe", gas_limit=100_000
        )
        done = client.wait(["zero-mined", "too-large"])
    print(
        f"\nrevert reasons: {done['zero-mined'].revert_reason!r}, "
        f"{done['too-large'].revert_reason!r}"
    )
    assert mined.nonce == 0 and custom.nonce == 1
    for key, reason in (
        ("zero-mined", "SignerProbe: amount is zero"),
        ("too-large", "TooLarge(5000, 1000)"),
    ):
        tx = done[key]
        assert tx.status is TxStatus.FAILED and tx.revert_reason == reason
        assert tx.receipt is not None and not tx.receipt.success


def test_refusals_name_their_reason(probe: str, signer: tuple[InProcessSigner, list[str]]) -> None:
    running, _ = signer
    with SignerClient(running.url, OTHER_TOKEN) as wallet:
        with pytest.raises(SignerError) as caught:
            wallet.send_transaction("w1", "k0", "bump", [1, TAG], contract="Probe")
        assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED
        print(f"\nwallet calling Probe.bump: {caught.value}")
        with pytest.raises(SignerError) as caught:
            wallet.send_transaction("w2", "k1", "bump", [1, TAG], contract="Probe")
        assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(SignerError) as caught:
            wallet.sign_typed_data("k0", {})
        assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED
        assert [k.alias for k in wallet.list_keys()] == ["k0"]
    with SignerClient(running.url, "not-a-token-at-all"), pytest.raises(SignerError) as caught:
        SignerClient(running.url, "not-a-token-at-all").list_keys()
    assert caught.value.code is grpc.StatusCode.UNAUTHENTICATED

    cases = [
        (
            dict(
                idempotency_key="", from_key="k0", function="bump", args=[1, TAG], contract="Probe"
            ),
            "idempotency_key",
        ),
        (
            dict(
                idempotency_key="i1",
                from_key="k0",
                function="bump",
                args=[1.5, TAG],
                contract="Probe",
            ),
            "json_args[0] (amount)",
        ),
        (
            dict(
                idempotency_key="i2",
                from_key="k0",
                function="bump",
                args=[1, "0x12"],
                contract="Probe",
            ),
            "json_args[1] (tag)",
        ),
        (
            dict(idempotency_key="i3", from_key="k0", function="nope", args=[], contract="Probe"),
            "function",
        ),
        (
            dict(
                idempotency_key="i4",
                from_key="k0",
                function="bump",
                args=[1, TAG],
                contract="Nothing",
            ),
            "contract_name",
        ),
        (
            dict(
                idempotency_key="i5",
                from_key="k0",
                function="bump",
                args=[1, TAG],
                address="0x1234",
                abi=PROBE["abi"],
            ),
            "contract_address",
        ),
        (
            dict(
                idempotency_key="i6",
                from_key="k0",
                function="bump",
                args=[1, TAG],
                contract="Probe",
                value_wei=5,
            ),
            "value_wei",
        ),
        (
            dict(
                idempotency_key="i7",
                from_key="k9",
                function="bump",
                args=[1, TAG],
                contract="Probe",
            ),
            "from_key",
        ),
    ]
    with SignerClient(running.url, TOKEN) as client:
        for kwargs, field in cases:
            with pytest.raises(SignerError) as caught:
                client.send_transaction(**kwargs)  # type: ignore[arg-type]
            assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT, kwargs
            assert caught.value.detail.startswith(f"{field}: "), caught.value.detail
        print(f"\nmalformed: {caught.value}")
        # An ad-hoc contract by address and ABI works like a registered one.
        tx = client.send_transaction(
            "by-address", "k1", "bump", [2, TAG], address=probe, abi=PROBE["abi"]
        )
        assert client.wait(["by-address"])["by-address"].status in (TxStatus.MINED, TxStatus.FINAL)
        assert tx.function == f"{Web3.to_checksum_address(probe)}.bump(uint256,bytes32)"


def test_typed_data_health_and_lookup_by_hash(signer: tuple[InProcessSigner, list[str]]) -> None:
    running, addresses = signer
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            "Open": [{"name": "session", "type": "bytes32"}, {"name": "max", "type": "uint256"}],
        },
        "primaryType": "Open",
        "domain": {"name": "chargenet", "chainId": 31337},
        "message": {"session": "0x" + "33" * 32, "max": 25_000_000},
    }
    with SignerClient(running.url, TOKEN) as client:
        signed = client.sign_typed_data("k0", typed)
        assert signed.signer_address == addresses[0]
        recovered = Account.recover_message(
            encode_typed_data(full_message=json.loads(json.dumps(typed))),
            signature=signed.signature,
        )
        assert recovered == addresses[0]
        with pytest.raises(SignerError) as caught:
            client.sign_typed_data("k0", {"types": {}})
        assert caught.value.detail.startswith("typed_data_json: ")
        tx = client.send_transaction("h1", "k0", "bump", [1, TAG], contract="Probe")
        assert client.get_transaction(tx_hash=tx.tx_hash).idempotency_key == "h1"
    with grpc.insecure_channel(running.url) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="chargenet.signer.v1.SignerService")
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


#: A head transaction not mined within a second gets a fee bump.
BUMP_AFTER_1_S = {"CHARGENET_SIGNER_STUCK_AFTER_SECONDS": "1"}


def resent(client: SignerClient, key: str, first: Transaction) -> Transaction:
    """The record once its hash is no longer the first attempt's (a fee bump), or once it is
    no longer pending; the last seen after 30 s."""
    deadline = time.monotonic() + 30
    current = first
    while (
        current.tx_hash == first.tx_hash
        and current.status is TxStatus.PENDING
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
        current = client.get_transaction(idempotency_key=key)
    return current


def test_stuck_transaction_is_resent_with_a_higher_fee(
    w3: Web3, probe: str, rpc_url: str, tmp_path: Path
) -> None:
    """Automining off and a base fee above the offer: the head transaction cannot be mined;
    the signer re-sends it at the same nonce with a higher fee, and the old hash is REPLACED."""
    keys = fresh_keys(w3, 1)
    env = signer_env(f"sqlite:///{tmp_path}/signer.db", keys, probe, rpc_url, **BUMP_AFTER_1_S)
    with inprocess_signer(env) as running, SignerClient(running.url, TOKEN) as client:
        rpc(w3, "evm_setAutomine", False)
        try:
            first = client.send_transaction("stuck", "k0", "bump", [1, TAG], contract="Probe")
            # The next block's base fee (100 gwei) is far above what the first attempt offers
            # (twice a base fee of a few wei, plus a 1 gwei tip).
            rpc(w3, "hardhat_setNextBlockBaseFeePerGas", hex(100 * 10**9))
            rpc(w3, "evm_mine")
            assert resent(client, "stuck", first).tx_hash != first.tx_hash, "no fee bump"
            rpc(w3, "evm_mine")
        finally:
            rpc(w3, "evm_setAutomine", True)
        done = client.wait(["stuck"])["stuck"]
        assert done.status in (TxStatus.MINED, TxStatus.FINAL) and done.nonce == first.nonce
        assert first.tx_hash in done.replaced_hashes
        old = client.get_transaction(tx_hash=first.tx_hash)
        assert old.status is TxStatus.REPLACED and old.replaced_by == done.tx_hash
        print(f"\nstuck {first.tx_hash[:10]} replaced by {done.tx_hash[:10]} at nonce {done.nonce}")


def test_refused_fee_bump_keeps_the_attempt_the_node_holds(
    w3: Web3, probe: str, rpc_url: str, tmp_path: Path
) -> None:
    """The node refuses a fee bump with an answer no retry cures while the first attempt waits
    in its mempool: that attempt can still be mined, so the record stays open and reports it;
    a filler at the nonce would take it from under it and the record would say FAILED.

    geth refuses with "insufficient funds"; Hardhat words a shortfall its own way, so the bump is
    signed for another chain id, which Hardhat refuses with an answer on the same list."""
    keys = fresh_keys(w3, 1)
    env = signer_env(f"sqlite:///{tmp_path}/signer.db", keys, probe, rpc_url, **BUMP_AFTER_1_S)
    with inprocess_signer(env) as running, SignerClient(running.url, TOKEN) as client:
        engine = running.app.engine
        assert engine is not None
        config = engine.config
        rpc(w3, "evm_setAutomine", False)
        try:
            first = client.send_transaction("held", "k0", "bump", [1, TAG], contract="Probe")
            engine.config = replace(config, chain_id=config.chain_id + 1)
            assert resent(client, "held", first).tx_hash != first.tx_hash, "no fee bump"
            time.sleep(0.5)  # the node's refusal of the bump is answered
            rpc(w3, "evm_mine")
        finally:
            engine.config = config
            rpc(w3, "evm_setAutomine", True)
        done = client.wait(["held"])["held"]
    assert done.status in (TxStatus.MINED, TxStatus.FINAL), (done.status, done.error)
    assert done.tx_hash == first.tx_hash and done.nonce == first.nonce
    assert probe_contract(w3, probe).functions.counts(keys[0].address).call() == 1


def test_a_taken_nonce_is_judged_lost_on_time_not_on_polls(
    w3: Web3, probe: str, rpc_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nonce used on chain with no receipt for any of the record's hashes is judged lost only
    after a while: a receipt can lag the nonce, and polls come as often as broadcasts do, so
    many of them can pass within a second. Here the nonce was really taken (by a transfer sent
    with the key outside the signer), so it ends FAILED, but not before the time is up."""
    monkeypatch.setattr(tracker, "LOST_AFTER_SECONDS", 3.0, raising=False)
    keys = fresh_keys(w3, 1)
    env = signer_env(
        f"sqlite:///{tmp_path}/signer.db",
        keys,
        probe,
        rpc_url,
        CHARGENET_SIGNER_POLL_SECONDS="0.02",
        # The lane must stay: a new one would read the nonce from the chain, past the taken one.
        CHARGENET_SIGNER_LANE_IDLE_SECONDS="600",
    )
    with inprocess_signer(env) as running, SignerClient(running.url, TOKEN) as client:
        client.send_transaction("before", "k0", "bump", [1, TAG], contract="Probe")
        client.wait(["before"])
        send_from(w3, keys[0], {"to": keys[0].address, "value": 0})
        started = time.monotonic()
        taken = client.send_transaction("taken", "k0", "bump", [1, TAG], contract="Probe")
        assert taken.nonce == 1
        # A poll every 20 ms: far more than 25 polls in this second and a half.
        time.sleep(1.5)
        assert client.get_transaction(idempotency_key="taken").status is TxStatus.PENDING
        done = client.wait(["taken"], timeout=30)["taken"]
        elapsed = time.monotonic() - started
    assert done.status is TxStatus.FAILED
    assert done.error == "nonce 1 was used by a transaction the signer did not send"
    assert elapsed >= 3.0


def test_watch_streams_status_changes(signer: tuple[InProcessSigner, list[str]]) -> None:
    running, _ = signer
    seen: list[TxStatus] = []
    with SignerClient(running.url, TOKEN) as client:
        ready = threading.Event()

        def watch() -> None:
            stream = client.watch(["w-1"], send_initial=False)
            ready.set()
            seen.extend(tx.status for tx in stream)

        thread = threading.Thread(target=watch)
        thread.start()
        ready.wait()
        time.sleep(0.3)
        client.send_transaction("w-1", "k0", "bump", [1, TAG], contract="Probe")
        thread.join(timeout=30)
    assert seen[0] is TxStatus.PENDING and seen[-1] is TxStatus.FINAL


def test_confirmations_are_counted_before_final(
    w3: Web3, probe: str, rpc_url: str, tmp_path: Path
) -> None:
    """Three confirmations and room for only two transactions in flight: all ten still get mined
    (MINED frees a slot), and each turns FINAL only once two more blocks sit on top of it."""
    keys = fresh_keys(w3, 1)
    env = signer_env(
        f"sqlite:///{tmp_path}/signer.db",
        keys,
        probe,
        rpc_url,
        CHARGENET_SIGNER_CONFIRMATIONS="3",
        CHARGENET_SIGNER_MAX_IN_FLIGHT="2",
    )
    ids = [f"conf-{i}" for i in range(10)]
    with inprocess_signer(env) as running, SignerClient(running.url, TOKEN) as client:
        with ThreadPoolExecutor(5) as pool:
            list(
                pool.map(
                    lambda key: client.send_transaction(
                        key, "k0", "bump", [1, TAG], contract="Probe"
                    ),
                    ids,
                )
            )
        mined = client.wait(ids, until=TxStatus.MINED, timeout=60)
        last = max(mined.values(), key=lambda t: t.nonce or 0)
        assert last.status is TxStatus.MINED and last.confirmations == 1
        first = min(mined.values(), key=lambda t: t.nonce or 0)
        assert client.get_transaction(idempotency_key=first.idempotency_key).status is (
            TxStatus.FINAL
        )
        rpc(w3, "evm_mine")
        time.sleep(0.5)
        assert client.get_transaction(idempotency_key=last.idempotency_key).status is (
            TxStatus.MINED
        )
        rpc(w3, "evm_mine")
        final = client.wait([last.idempotency_key], until=TxStatus.FINAL, timeout=30)
        assert final[last.idempotency_key].status is TxStatus.FINAL
        assert final[last.idempotency_key].confirmations >= 3
