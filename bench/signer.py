"""Transactions per second through the signer versus naive web3.py send-and-wait, side by side.

Both send the same contract call (SignerProbe.bump) to the same node:
- naive: one process, one key, for each transaction build (nonce, fees, gas), sign, send, wait
  for the receipt, next - what a service without the signer would do;
- signer: the signer as its own process (``python -m chargenet.signer.main``, SQLite file), fed
  by ``--callers`` client threads over gRPC, finished when the signer reports every transaction
  mined.

Usage (a Hardhat node on CHARGENET_TEST_RPC_URL, e.g. ``bash scripts/components/components.sh up
hardhat``):

    uv run python bench/signer.py --count 600 [--gas-limit 100000] [--accounts 2]

``--gas-limit 0`` makes both sides estimate gas per transaction (web3's build_transaction does;
the signer does when the request names no gas limit).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from web3 import Web3
from web3.types import TxParams

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chargenet.core.signer_client import SignerClient, TxStatus
from tests.signer.harness import (
    TOKEN,
    SignerProcess,
    deploy_probe,
    fresh_keys,
    probe_contract,
    signer_env,
)

TAG = b"\x42" * 32


def naive(w3: Web3, probe: str, count: int, gas_limit: int) -> float:
    (key,) = fresh_keys(w3, 1)
    contract = probe_contract(w3, probe)
    started = time.perf_counter()
    for _ in range(count):
        params: dict[str, object] = {
            "from": key.address,
            "nonce": w3.eth.get_transaction_count(key.address),
        }
        if gas_limit:
            params["gas"] = gas_limit
        tx = contract.functions.bump(1, TAG).build_transaction(cast(TxParams, params))
        signed = key.sign_transaction(cast(dict[str, Any], tx))
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.01)
        assert receipt["status"] == 1
    return count / (time.perf_counter() - started)


def through_signer(
    w3: Web3, probe: str, url: str, count: int, gas_limit: int, accounts: int, callers: int
) -> float:
    keys = fresh_keys(w3, accounts)
    with tempfile.TemporaryDirectory() as folder:
        env = signer_env(f"sqlite:///{folder}/signer.db", keys, probe, url)
        signer = SignerProcess(env, Path(folder) / "signer.log")
        signer.start()
        try:
            with SignerClient(f"127.0.0.1:{signer.port}", TOKEN) as client:
                # One warm-up call per key so lane start-up is not in the figure.
                for i in range(accounts):
                    client.send_transaction(
                        f"warm-{i}", f"k{i}", "bump", [1, TAG], contract="Probe"
                    )
                ids = [f"tx-{i}" for i in range(count)]
                started = time.perf_counter()

                def send(i: int) -> None:
                    client.send_transaction(
                        ids[i],
                        f"k{i % accounts}",
                        "bump",
                        [1, TAG],
                        contract="Probe",
                        gas_limit=gas_limit,
                    )

                with ThreadPoolExecutor(callers) as pool:
                    list(pool.map(send, range(count)))
                done = client.wait(ids, until=TxStatus.MINED, timeout=600)
                elapsed = time.perf_counter() - started
                failed = [t for t in done.values() if t.status is TxStatus.FAILED]
                assert not failed, failed[:3]
        finally:
            signer.stop()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=600, help="signer transactions per round")
    parser.add_argument("--naive-count", type=int, default=0, help="default: count / 4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gas-limit", type=int, default=100_000, help="0: estimate each")
    parser.add_argument("--accounts", type=int, default=2)
    parser.add_argument("--callers", type=int, default=16)
    args = parser.parse_args()
    url = os.environ.get("CHARGENET_TEST_RPC_URL", "http://127.0.0.1:8545")
    w3 = Web3(Web3.HTTPProvider(url))
    probe = deploy_probe(w3)
    naive_count = args.naive_count or max(50, args.count // 4)
    gas = args.gas_limit or "estimated"
    print(f"node {url}, gas limit {gas}, {args.accounts} signer accounts, {args.callers} callers")
    # Rounds alternate the two so that load from elsewhere on the machine hits both alike.
    ratios = []
    for round_no in range(1, args.rounds + 1):
        naive_rate = naive(w3, probe, naive_count, args.gas_limit)
        signer_rate = through_signer(
            w3, probe, url, args.count, args.gas_limit, args.accounts, args.callers
        )
        ratios.append(signer_rate / naive_rate)
        print(
            f"round {round_no}: naive {naive_rate:6.1f} tx/s ({naive_count} tx) | "
            f"signer {signer_rate:6.1f} tx/s ({args.count} tx) | {ratios[-1]:.2f}x",
            flush=True,
        )
    print(f"median ratio: {statistics.median(ratios):.2f}x over {args.rounds} rounds")


if __name__ == "__main__":
    main()
