"""The signer SIGKILLed in the middle of 4 callers x 500 transactions, then restarted.

Nothing may be lost (every request ends mined), nothing sent twice (each account's nonces are
0..n-1 and the contract counted each call once), and the callers' own retries - the same
idempotency key after UNAVAILABLE - complete.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from web3 import Web3

from chargenet.core.signer_client import SignerClient, Transaction
from tests.signer.harness import TOKEN, SignerProcess, fresh_keys, signer_env
from tests.signer.test_hardhat import TAG, check_ledger

pytestmark = [pytest.mark.hardhat, pytest.mark.slow]
CALLERS = 4
PER_CALLER = 500
KILL_AFTER = 700


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/signer.db"
    return str(request.getfixturevalue("postgres_database"))


def test_sigkill_mid_load_loses_nothing_and_sends_nothing_twice(
    w3: Web3, probe: str, rpc_url: str, database_url: str, tmp_path: Path
) -> None:
    keys = fresh_keys(w3, 2)
    env = signer_env(database_url, keys, probe, rpc_url, CHARGENET_LOG_LEVEL="INFO")
    signer = SignerProcess(env, tmp_path / "signer.log")
    port = free_port()
    signer.start(port)
    url = f"127.0.0.1:{port}"
    sent = 0
    lock = threading.Lock()
    results: dict[str, Transaction] = {}
    errors: list[BaseException] = []

    def caller(index: int) -> None:
        nonlocal sent
        try:
            with SignerClient(url, TOKEN, retry_for=120) as client:
                for n in range(PER_CALLER):
                    tx = client.send_transaction(
                        f"crash-{index}-{n}", f"k{n % 2}", "bump", [1, TAG], contract="Probe"
                    )
                    with lock:
                        results[tx.idempotency_key] = tx
                        sent += 1
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
    try:
        for thread in threads:
            thread.start()
        while sent < KILL_AFTER and not errors:
            time.sleep(0.05)
        signer.kill()
        killed_at = sent
        with lock:
            before_kill = dict(results)
        time.sleep(1.0)
        signer.start(port)
        for thread in threads:
            thread.join(timeout=600)
        assert not errors, errors
        with SignerClient(url, TOKEN) as client:
            # Callers whose answer was lost in the crash send again: same key, same transaction.
            resent = [
                client.send_transaction(
                    key, f"k{int(key.rsplit('-', 1)[1]) % 2}", "bump", [1, TAG], contract="Probe"
                )
                for key in sorted(before_kill)[-100:]
            ]
            done = client.wait(sorted(results), timeout=300)
    finally:
        signer.stop()
    assert all(not tx.created for tx in resent)
    assert all(tx.tx_hash == before_kill[tx.idempotency_key].tx_hash for tx in resent)
    # A caller's retry after UNAVAILABLE whose first attempt was stored before the kill gets that
    # record back (created False); one that was not stored is created once.
    recovered = sum(1 for tx in results.values() if not tx.created)
    print(
        f"\nSIGKILL after {killed_at} acknowledged sends; after restart all "
        f"{len(done)} of {CALLERS * PER_CALLER} mined, nonces 0..{len(done) // 2 - 1} per account, "
        f"{recovered} in-flight retries answered with the record stored before the kill, "
        f"{len(resent)} re-sent keys answered with their original hash"
    )
    assert len(done) == CALLERS * PER_CALLER
    check_ledger(w3, probe, list(done.values()), [k.address for k in keys])
    log = (tmp_path / "signer.log").read_text()
    assert "re-broadcasting" in log or "listening" in log
    for key in keys:
        assert bytes(key.key).hex() not in log, "a private key reached the log"
