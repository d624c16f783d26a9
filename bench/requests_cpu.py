"""CPU per REST request, at each end: the server's HTTP parser and the client library.

    uv run python bench/requests_cpu.py

The services answer with uvicorn and FastAPI (``core.http``); the simulated drivers of the demo,
the e2e test and ``bench/e2e.py`` call them with ``cli.network.client``, on the same two cores.
This prints what a small authenticated POST (a driver's stop) costs:
- the server process, parsing with httptools (what the services run) and with pure-Python h11
  (uvicorn's fallback), read from /proc while an aiohttp client sends;
- the calling process, with aiohttp (what the network client uses) and with httpx, against the
  httptools server.
Requests go 1 at a time and 50 at once, each of 50 clients on its own connections (as each
driver's app has).
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

REQUESTS = 3000
CLIENTS = 50
HEADERS = {"Authorization": "Bearer " + "x" * 180}  # a token's length
PATH = "/v1/sessions/3f2b8c1e-0d4a-4e8b-9b61-2a7c5d9e1f00/stop"

SERVER = """
import sys
import uvicorn
from fastapi import FastAPI, Header

app = FastAPI()


@app.post("/v1/sessions/{session_id}/stop", status_code=202)
async def stop(session_id: str, authorization: str = Header()) -> dict[str, object]:
    return {"session_id": session_id, "state": "stopping", "version": 7, "energy_wh": 1234}


uvicorn.run(app, port=int(sys.argv[2]), http=sys.argv[1], log_config=None, access_log=False)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _load(send: Callable[[int], Awaitable[None]], at_once: int) -> None:
    """REQUESTS requests, ``at_once`` at a time, each of those on its own client."""
    for _ in range(0, REQUESTS, at_once):
        await asyncio.gather(*(send(i) for i in range(at_once)))


async def _aiohttp_clients(
    base: str,
) -> tuple[list[aiohttp.ClientSession], Callable[[int], Awaitable[None]]]:
    clients = [aiohttp.ClientSession(base) for _ in range(CLIENTS)]

    async def send(i: int) -> None:
        async with clients[i].post(PATH, headers=HEADERS) as answer:
            assert answer.status == 202, answer.status
            await answer.json()

    return clients, send


async def _measure(parser: str) -> tuple[dict[int, float], dict[str, float]]:
    """Server CPU us a request (by concurrency) and, against the httptools server only, the
    client's CPU us a request with aiohttp and httpx."""
    port = _free_port()
    server = await asyncio.create_subprocess_exec(sys.executable, "-c", SERVER, parser, str(port))
    try:
        await _wait_listening(port)
        base = f"http://127.0.0.1:{port}"
        clients, send = await _aiohttp_clients(base)
        served: dict[int, float] = {}
        try:
            await _load(send, CLIENTS)  # connections opened, both processes warm
            for at_once in (1, CLIENTS):
                before = _process_cpu(server.pid)
                await _load(send, at_once)
                served[at_once] = (_process_cpu(server.pid) - before) / REQUESTS * 1e6
        finally:
            for client in clients:
                await client.close()
        return served, await _clients(base) if parser == "httptools" else {}
    finally:
        server.terminate()
        await server.wait()


async def _clients(base: str) -> dict[str, float]:
    """The calling process's CPU us a request, 50 at once, per client library."""
    costs: dict[str, float] = {}
    clients, send = await _aiohttp_clients(base)
    try:
        await _load(send, CLIENTS)
        before = _own_cpu()
        await _load(send, CLIENTS)
        costs["aiohttp"] = (_own_cpu() - before) / REQUESTS * 1e6
    finally:
        for client in clients:
            await client.close()
    phones = [httpx.AsyncClient(base_url=base) for _ in range(CLIENTS)]

    async def send_httpx(i: int) -> None:
        answer = await phones[i].post(PATH, headers=HEADERS)
        assert answer.status_code == 202, answer.status_code
        answer.json()

    try:
        await _load(send_httpx, CLIENTS)
        before = _own_cpu()
        await _load(send_httpx, CLIENTS)
        costs["httpx"] = (_own_cpu() - before) / REQUESTS * 1e6
    finally:
        for phone in phones:
            await phone.aclose()
    return costs


async def main() -> None:
    for parser in ("httptools", "h11"):
        served, clients = await _measure(parser)
        print(
            f"server, {parser:9}: {served[1]:4.0f} us a request one at a time, "
            f"{served[CLIENTS]:4.0f} with {CLIENTS} at once",
            flush=True,
        )
        for library, cost in clients.items():
            print(f"client, {library:9}: {cost:4.0f} us a request, {CLIENTS} at once", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
