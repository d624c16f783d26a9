"""CPU per raw JSON-RPC batch (the wallet's chain snapshot, the escrow's station reads): through
web3's HTTP provider (requests) against ``core.chain.rpc.answers`` (urllib3), on a node.

    eval "$(scripts/components/components.sh env)"
    uv run python bench/chain_reads.py         # CHARGENET_TEST_RPC_URL names the node

Each sends the same batch of 3 calls 500 times after a warm-up, and prints the CPU of this
process per batch and the wall time (the node's share is in the wall time only).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

from chargenet.core.chain.rpc import answers

CALLS: list[tuple[str, list[object]]] = [
    ("eth_blockNumber", []),
    ("eth_chainId", []),
    ("eth_gasPrice", []),
]
REPEAT = 500


def _measure(call: Callable[[], object]) -> tuple[float, float]:
    for _ in range(20):
        call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(REPEAT):
        call()
    return (
        (time.process_time() - cpu) * 1e6 / REPEAT,
        (time.perf_counter() - wall) * 1e6 / REPEAT,
    )


def main() -> int:
    url = os.environ.get("CHARGENET_TEST_RPC_URL", "http://127.0.0.1:8545")
    provider = HTTPProvider(url, request_kwargs={"timeout": 30})
    w3 = Web3(provider)
    batch = [(RPCEndpoint(method), params) for method, params in CALLS]
    print(f"a batch of {len(CALLS)} calls to {url}, {REPEAT} times: us per batch")
    print("| client | CPU | wall |")
    print("|---|---|---|")
    for label, call in (
        ("web3's provider (requests)", lambda: provider.make_batch_request(batch)),
        ("core.chain.rpc.answers (urllib3)", lambda: answers(w3, CALLS)),
    ):
        cpu, wall = _measure(call)
        print(f"| {label} | {cpu:.0f} | {wall:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
