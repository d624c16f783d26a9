"""A private Hardhat node, a deployment on it, and fast ways to fill it with registry events.

The registry's reorg test and its benchmark call ``evm_snapshot``/``evm_revert`` and switch
automining off: on the shared node (``CHARGENET_TEST_RPC_URL``) that would rewind or stall other
engineers' tests, so they run on a node of their own, started from the same cached Hardhat
installation that ``scripts/components/components.sh`` set up.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from eth_utils.crypto import keccak
from web3 import Web3

from chargenet.core.chain import Deployment, StationInfo, connect, deploy_chargenet

TARIFF: dict[str, Any] = {
    "country_code": "DE",
    "party_id": "CNT",
    "id": "TARIFF-AC-1",
    "currency": "EUR",
    "elements": [{"price_components": [{"type": "ENERGY", "price": 0.35, "step_size": 1}]}],
    "last_updated": "2026-01-01T00:00:00Z",
}


def info(
    lat: int = 52_520_008, lon: int = 13_404_954, power: int = 150_000, connectors: int = 2
) -> StationInfo:
    return StationInfo(
        latitude_e6=lat,
        longitude_e6=lon,
        connector_count=connectors,
        max_power_w=power,
        tariff_id=b"TARIFF-AC-1".ljust(32, b"\0"),
        tariff_hash=keccak(b"tariff"),
        meter_key_hash=keccak(b"meter public key"),
    )


def station_id(n: int, prefix: str = "DE*CNT*E") -> bytes:
    return f"{prefix}{n:06d}".encode().ljust(32, b"\0")


def _hardhat_project() -> Path:
    cache = Path(os.environ.get("CHARGENET_CACHE", Path.home() / ".cache" / "chargenet"))
    for candidate in sorted((cache / "hardhat").glob("*/.complete")):
        return candidate.parent
    raise FileNotFoundError(
        "no cached Hardhat installation: run `bash scripts/components/components.sh install`"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rpc(url: str, method: str, params: Sequence[Any] = ()) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, body.encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["result"]


@contextmanager
def private_hardhat() -> Iterator[str]:
    """A Hardhat node on a free port for the duration; yields its URL."""
    project = _hardhat_project()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bootstrap = project / "node_modules" / "hardhat" / "internal" / "cli" / "bootstrap.js"
    env = {**os.environ, "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true"}
    process = subprocess.Popen(
        ["node", str(bootstrap), "node", "--hostname", "127.0.0.1", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if _rpc(url, "eth_chainId") == "0x7a69":
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the private Hardhat node did not start")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def deploy(url: str) -> tuple[Web3, Deployment]:
    w3 = connect(url, timeout=120)
    return w3, deploy_chargenet(w3, admin=w3.eth.accounts[0])


def rpc(w3: Web3, method: str, params: Sequence[Any] = ()) -> Any:
    response = w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    if "error" in response:
        raise RuntimeError(f"{method}: {response['error']}")
    return response["result"]


def register_many(
    w3: Web3,
    deployment: Deployment,
    ids: Sequence[bytes],
    *,
    senders: Sequence[str],
    per_block: int = 150,
    station_info: StationInfo | None = None,
) -> int:
    """Register ``ids`` from ``senders`` (round robin), ``per_block`` transactions a block.

    Automining is off while this runs: the transactions are sent as JSON-RPC batches (one HTTP
    request each) and mined with ``evm_mine``, which is ~50x faster than send-and-wait. Returns
    the last block mined.
    """
    details = (station_info or info()).as_tuple()
    registry = deployment.registry
    provider = w3.provider
    rpc(w3, "evm_setAutomine", [False])
    try:
        for start in range(0, len(ids), per_block):
            batch = [
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "eth_sendTransaction",
                    "params": [
                        {
                            "from": senders[(start + i) % len(senders)],
                            "to": registry.address,
                            "gas": hex(300_000),
                            "data": registry.encode_abi("register", args=[sid, details, []]),
                        }
                    ],
                }
                for i, sid in enumerate(ids[start : start + per_block])
            ]
            answers = _post(provider, batch)
            errors = [a["error"] for a in answers if "error" in a]
            if errors:
                raise RuntimeError(f"eth_sendTransaction failed: {errors[0]}")
            rpc(w3, "evm_mine")
    finally:
        rpc(w3, "evm_setAutomine", [True])
    return int(w3.eth.block_number)


def _post(provider: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    body = json.dumps(batch).encode()
    request = urllib.request.Request(
        provider.endpoint_uri, body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        answers: list[dict[str, Any]] = json.loads(response.read())
        return answers


@contextmanager
def served(
    app: Any, port: int = 0, closing: Callable[[], Awaitable[None]] | None = None
) -> Iterator[str]:
    """``app`` behind uvicorn (on a free port by default), as in production: the server decodes
    the path once (Starlette's TestClient twice). Its lifespan already runs in a TestClient.

    ``closing`` runs on the server's loop once it stopped: clients the app's handlers pooled
    connections in on that loop cannot close them from the lifespan's."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    server = uvicorn.Server(config)

    async def serve() -> None:
        await server.serve()
        if closing is not None:
            await closing()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="served", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
