"""Gateway benchmark: N simulated charge points against the gateway, and the same load against a
bare ``websockets`` echo server (the Python ceiling), side by side in one run.

    uv run python bench/gateway.py                      # 500 charge points, 50 active
    uv run python bench/gateway.py --charge-points 10000 --active 25,50,100
    CHARGENET_TEST_KAFKA=127.0.0.1:9092 uv run python bench/gateway.py --kafka

Each server runs in its own process (started by this script); the charge points run here. Every
charge point connects and boots (and on the gateway starts a transaction backed by an escrow event,
so its MeterValues become ``meter`` events); then ``active`` of them run Heartbeat + MeterValues +
StatusNotification in lockstep for ``--seconds``. Printed: connections held, messages per second
and round-trip p50/p99 (the client sees more than the handler: p99 under 50 ms here means the
handler's is too), and server RSS growth per idle connection. The gateway runs with schema
validation and bus publishing on; security profile 0 (scrypt per connect would measure scrypt).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import resource
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from websockets.asyncio.client import ClientConnection, connect

OPEN_FILES = 65_536


def raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(OPEN_FILES, soft), hard) if hard != resource.RLIM_INFINITY else OPEN_FILES
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def token_of(index: int) -> str:
    return f"TOKEN-{index:05d}"


def cp_of(index: int) -> str:
    return f"BENCH-{index:05d}"


# -- servers (each in its own process) -------------------------------------------------------------
async def serve_echo(port: int) -> None:
    """The Python ceiling: parse the OCPP-J frame, answer a CALLRESULT, nothing else."""
    from websockets.asyncio.server import ServerConnection, serve

    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            message = json.loads(raw)
            await ws.send(json.dumps([3, message[1], {}], separators=(",", ":")))

    async with serve(
        handler,
        "127.0.0.1",
        port,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        compression=None,
        max_queue=4,
    ):
        print("ready", flush=True)
        await asyncio.Future()


async def serve_gateway(port: int, charge_points: int, kafka: bool) -> None:
    from chargenet.core.bus import create_bus
    from chargenet.core.envelope import make_envelope
    from chargenet.core.events import EscrowOpened
    from chargenet.gateway.credentials import CredentialStore
    from chargenet.gateway.server import Gateway
    from chargenet.gateway.settings import GatewaySettings

    ids = [cp_of(i) for i in range(charge_points)]
    overrides: dict[str, object] = {}
    if kafka:
        overrides = {
            "bus": "kafka",
            "kafka_bootstrap_servers": os.environ["CHARGENET_TEST_KAFKA"],
            "kafka_topic_prefix": f"bench{uuid.uuid4().hex[:8]}.",
        }
    settings = GatewaySettings(
        cpo_id="cpo-bench",
        replica_id="bench",
        ws_port=port,
        security_profile=0,
        charge_points_json="{}",
        rate_limit_per_second=10_000,
        rate_limit_burst=10_000,
        log_level="WARNING",
        **overrides,  # type: ignore[arg-type]
    )
    bus = create_bus(settings)
    expires = datetime.now(UTC) + timedelta(hours=2)
    for index, cp in enumerate(ids):
        session = f"bench-session-{index}"
        opened = EscrowOpened(
            session_id=session,
            cpo_id="cpo-bench",
            station_id=f"station-{index}",
            charge_point_id=cp,
            connector_id=1,
            id_token=token_of(index),
            max_amount=10_000_000,
            expires_at=expires,
            tx_hash="0x" + "00" * 32,
        )
        bus.publish("sessions", make_envelope(opened, subject=session, source="bench"))
    bus.flush()
    credentials = CredentialStore.from_json(
        json.dumps({"charge_points": [{"id": cp} for cp in ids]})
    )
    gateway = Gateway(settings, bus, credentials)
    await gateway.start()
    while len(gateway.authz) < charge_points:  # noqa: ASYNC110 - a bus thread fills it
        await asyncio.sleep(0.1)
    print("ready", flush=True)
    await asyncio.Future()


# -- the charge points (this process) -------------------------------------------------------
@dataclass
class Result:
    held: int
    rss_idle_kb: int
    rss_base_kb: int
    rates: list[tuple[int, float, float, float, float]]  # active, msgs/s, p50, p99 ms, CPU us/msg
    #: Per level: CPU us per message by kind of server thread.
    threads: list[dict[str, float]]


def _stat_cpu(path: str) -> tuple[str, float]:
    """A /proc stat file's command name and user + system CPU seconds."""
    with open(path) as stat:
        name, rest = stat.read().split("(", 1)[1].rsplit(")", 1)
    fields = rest.split()
    return name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (all its threads, librdkafka's too, ended ones included)."""
    return _stat_cpu(f"/proc/{pid}/stat")[1]


def cpu_by_thread_kind(pid: int) -> dict[str, float]:
    """CPU seconds per kind of thread: the event loop's ("main"), Python's other threads
    ("python", e.g. bus consumers) and librdkafka's ("rdk:...")."""
    kinds: dict[str, float] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            name, seconds = _stat_cpu(f"/proc/{pid}/task/{task}/stat")
        except FileNotFoundError:
            continue  # the thread ended meanwhile
        kind = "main" if task == str(pid) else name.rstrip("0123456789")
        kinds[kind] = kinds.get(kind, 0.0) + seconds
    return kinds


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class BenchChargePoint:
    def __init__(self, index: int, ws: ClientConnection) -> None:
        self.index = index
        self.ws = ws
        self.sequence = 0
        self.transaction = 0

    async def call(self, action: str, payload: dict[str, object]) -> list[object]:
        answer: list[object] = json.loads(await self.send(action, json.dumps(payload)))
        return answer

    async def send(self, action: str, payload_json: str) -> str:
        """One CALL from pre-serialised payload text; the answer checked by its prefix only, so
        the client spends as little as it can (it shares the machine with the server)."""
        self.sequence += 1
        message_id = str(self.sequence)
        await self.ws.send(f'[2,"{message_id}","{action}",{payload_json}]')
        answer = await self.ws.recv()
        if not isinstance(answer, str) or not answer.startswith(f'[3,"{message_id}"'):
            raise RuntimeError(f"{cp_of(self.index)}: unexpected answer {answer!r}")
        return answer


async def open_all(port: int, count: int, batch: int = 250) -> list[BenchChargePoint]:
    async def one(index: int) -> BenchChargePoint:
        ws = await connect(
            f"ws://127.0.0.1:{port}/ocpp/{cp_of(index)}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            compression=None,
            ping_interval=None,
            open_timeout=60,
        )
        return BenchChargePoint(index, ws)

    points: list[BenchChargePoint] = []
    for start in range(0, count, batch):
        points.extend(
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + batch))))
        )
    return points


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def prepare(points: list[BenchChargePoint], gateway: bool) -> None:
    boot: dict[str, object] = {"chargePointVendor": "bench", "chargePointModel": "bench"}

    async def one(point: BenchChargePoint) -> None:
        await point.call("BootNotification", boot)
        if gateway:
            answer = await point.call(
                "StartTransaction",
                {
                    "connectorId": 1,
                    "idTag": token_of(point.index),
                    "meterStart": 0,
                    "timestamp": now_text(),
                },
            )
            result = answer[2]
            assert isinstance(result, dict) and result["idTagInfo"]["status"] == "Accepted"
            point.transaction = int(result["transactionId"])

    for start in range(0, len(points), 250):
        await asyncio.gather(*(one(p) for p in points[start : start + 250]))


async def load(points: list[BenchChargePoint], seconds: float) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    stamp = now_text()

    status = json.dumps({"connectorId": 1, "errorCode": "NoError", "status": "Charging"})

    async def loop(point: BenchChargePoint) -> None:
        energy = 0
        while time.perf_counter() < stop_at:
            energy += 10
            meter = (
                f'{{"connectorId":1,"transactionId":{point.transaction},"meterValue":'
                f'[{{"timestamp":"{stamp}","sampledValue":[{{"value":"{energy}","unit":"Wh"}}]}}]}}'
            )
            for action, payload in (
                ("Heartbeat", "{}"),
                ("MeterValues", meter),
                ("StatusNotification", status),
            ):
                sent = time.perf_counter()
                await point.send(action, payload)
                latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    await asyncio.gather(*(loop(p) for p in points))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return len(latencies) / elapsed, p50, p99, len(latencies)


async def run_against(
    kind: str, charge_points: int, actives: list[int], seconds: float, kafka: bool
) -> Result:
    port = free_port()
    command = [sys.executable, __file__, f"serve-{kind}", "--port", str(port)]
    command += ["--charge-points", str(charge_points)] + (["--kafka"] if kafka else [])
    server = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    try:
        assert server.stdout is not None
        line = await server.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"{kind} server did not start")
        await asyncio.sleep(0.5)
        base = rss_kb(server.pid)
        points = await open_all(port, charge_points)
        await prepare(points, kind == "gateway")
        await asyncio.sleep(2)  # let the bus and the allocator settle
        idle = rss_kb(server.pid)
        held = sum(1 for p in points if p.ws.state.name == "OPEN")
        rates = []
        threads = []
        for active in actives:
            cpu_before, kinds_before = cpu_seconds(server.pid), cpu_by_thread_kind(server.pid)
            rate, p50, p99, count = await load(points[:active], seconds)
            cpu_per_message = (cpu_seconds(server.pid) - cpu_before) / count * 1e6
            rates.append((active, rate, p50, p99, cpu_per_message))
            kinds = cpu_by_thread_kind(server.pid)
            threads.append(
                {k: (v - kinds_before.get(k, 0.0)) / count * 1e6 for k, v in kinds.items()}
            )
        await asyncio.gather(*(p.ws.close() for p in points))
        return Result(held, idle, base, rates, threads)
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)


def report(kind: str, result: Result, charge_points: int) -> None:
    per_connection = (result.rss_idle_kb - result.rss_base_kb) * 1024 / max(1, charge_points)
    print(f"[{kind}] connections held: {result.held}/{charge_points}")
    print(
        f"[{kind}] RSS {result.rss_base_kb / 1024:.1f} MB -> {result.rss_idle_kb / 1024:.1f} MB: "
        f"{per_connection / 1024:.1f} KB per idle connection"
    )
    for active, rate, p50, p99, cpu in result.rates:
        mark = "ok" if p99 < 50 else "over 50 ms"
        print(
            f"[{kind}] active {active:>5}: {rate:>8.0f} msg/s  p50 {p50:6.1f} ms  "
            f"p99 {p99:6.1f} ms ({mark})  server CPU {cpu:5.0f} us/msg"
        )
    for (active, *_rest), kinds in zip(result.rates, result.threads, strict=True):
        busy = ", ".join(f"{k} {v:.0f}" for k, v in sorted(kinds.items(), key=lambda i: -i[1]))
        print(f"[{kind}] active {active:>5}: CPU us/msg by thread kind: {busy}")


def best(result: Result) -> float:
    return max((rate for _a, rate, _p50, p99, _cpu in result.rates if p99 < 50), default=0.0)


def cpu_per_message(result: Result) -> float:
    """Median server CPU per message over the levels: unlike the rate, it hardly depends on
    what else the machine runs, so it compares the two servers' own costs."""
    costs = sorted(cpu for *_rest, cpu in result.rates)
    return costs[len(costs) // 2]


async def bench(args: argparse.Namespace) -> None:
    actives = [int(a) for a in args.active.split(",")]
    if max(actives) > args.charge_points:
        raise SystemExit("--active cannot exceed --charge-points")
    gateway = await run_against("gateway", args.charge_points, actives, args.seconds, args.kafka)
    report("gateway", gateway, args.charge_points)
    echo = await run_against("echo", args.charge_points, actives, args.seconds, False)
    report("echo", echo, args.charge_points)
    ratio = best(gateway) / best(echo) if best(echo) else 0.0
    bus = "kafka" if args.kafka else "in-process bus"
    print(
        f"best rate at p99 < 50 ms: gateway {best(gateway):.0f} msg/s ({bus}), "
        f"echo {best(echo):.0f} msg/s: {ratio:.2f}x"
    )
    gateway_cpu, echo_cpu = cpu_per_message(gateway), cpu_per_message(echo)
    print(
        f"server CPU per message (median of levels): gateway {gateway_cpu:.0f} us, "
        f"echo {echo_cpu:.0f} us: the echo server's cost is {echo_cpu / gateway_cpu:.2f}x "
        "the gateway's"
    )


@contextlib.contextmanager
def profiled(path: str | None) -> Iterator[None]:
    """With CHARGENET_BENCH_PROFILE=<file>, the gateway process writes cProfile stats there.

    The bench ends the server with SIGTERM, so that signal stops the profile and saves it.
    """
    if not path:
        yield
        return
    profile = cProfile.Profile()

    def save(_signum: int, _frame: object) -> None:
        profile.disable()
        profile.dump_stats(path)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, save)
    profile.enable()
    yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="bench")
    parser.add_argument("--charge-points", type=int, default=500)
    parser.add_argument("--active", default="50", help="comma-separated concurrency levels")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--kafka", action="store_true", help="publish to CHARGENET_TEST_KAFKA")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    raise_open_files()
    if args.mode == "serve-echo":
        asyncio.run(serve_echo(args.port))
    elif args.mode == "serve-gateway":
        with profiled(os.environ.get("CHARGENET_BENCH_PROFILE")):
            asyncio.run(serve_gateway(args.port, args.charge_points, args.kafka))
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
