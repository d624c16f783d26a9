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
import contextlib
import os
import resource
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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


async def _us_a_request(
    send: Callable[[int], Awaitable[None]], at_once: int, cpu: Callable[[], float]
) -> float:
    """``cpu``'s seconds over a load, in us a request."""
    before = cpu()
    await _load(send, at_once)
    return (cpu() - before) / REQUESTS * 1e6


@contextlib.asynccontextmanager
async def _server(parser: str) -> AsyncIterator[tuple[str, int]]:
    """A uvicorn server parsing with ``parser``, in its own process: its URL and pid."""
    port = _free_port()
    server = await asyncio.create_subprocess_exec(sys.executable, "-c", SERVER, parser, str(port))
    try:
        await _wait_listening(port)
        yield f"http://127.0.0.1:{port}", server.pid
    finally:
        server.terminate()
        await server.wait()


@contextlib.asynccontextmanager
async def _aiohttp_sender(base: str) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    """``send(i)``: a POST from the i-th of CLIENTS aiohttp sessions; all warm when yielded."""
    clients = [aiohttp.ClientSession(base) for _ in range(CLIENTS)]

    async def send(i: int) -> None:
        async with clients[i].post(PATH, headers=HEADERS) as answer:
            assert answer.status == 202, answer.status
            await answer.json()

    try:
        await _load(send, CLIENTS)  # connections opened, both processes warm
        yield send
    finally:
        for client in clients:
            await client.close()


@contextlib.asynccontextmanager
async def _httpx_sender(base: str) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    """As ``_aiohttp_sender``, with httpx's async clients."""
    clients = [httpx.AsyncClient(base_url=base) for _ in range(CLIENTS)]

    async def send(i: int) -> None:
        answer = await clients[i].post(PATH, headers=HEADERS)
        assert answer.status_code == 202, answer.status_code
        answer.json()

    try:
        await _load(send, CLIENTS)
        yield send
    finally:
        for client in clients:
            await client.aclose()


async def main() -> None:
    for parser in ("httptools", "h11"):
        async with _server(parser) as (base, pid):
            async with _aiohttp_sender(base) as send:
                served = [
                    await _us_a_request(send, n, lambda: _process_cpu(pid)) for n in (1, CLIENTS)
                ]
            print(
                f"server, {parser:9}: {served[0]:4.0f} us a request one at a time, "
                f"{served[1]:4.0f} with {CLIENTS} at once",
                flush=True,
            )
            if parser != "httptools":
                continue  # the clients are measured against the server the services run
            for library, sender in (("aiohttp", _aiohttp_sender), ("httpx", _httpx_sender)):
                async with sender(base) as send:
                    cost = await _us_a_request(send, CLIENTS, _own_cpu)
                print(
                    f"client, {library:9}: {cost:4.0f} us a request, {CLIENTS} at once", flush=True
                )


if __name__ == "__main__":
    asyncio.run(main())
