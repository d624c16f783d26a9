"""The whole pipeline on the distributed stack: sessions per second (REST request to settlement)
and session-start latency (REST request to the RemoteStart arriving at the charge point).

    uv run python bench/e2e.py                      # 1, 10, 100 concurrent drivers
    uv run python bench/e2e.py --drivers 1,10 --sessions 3
    uv run python bench/e2e.py --warmup 3           # a warm broker first (not counted)

Starts its own stack (``chargenet up``'s supervisor: a process per service, two gateway replicas
per CPO, Kafka, PostgreSQL, the Hardhat node with automine) on shifted ports, registers two
stations per concurrent driver, and runs each level: every driver requests a session, waits until
its charge point charges, stops at once (or after ``--charge-seconds``) and waits for the
settlement, then starts the next at its other station. Prints one line per level and a Markdown
table for bench/RESULTS.md.

Two loads, both closed loops of N drivers:
- ``--charge-seconds 0`` (the default): back-to-back sessions that stop as soon as they charge.
  The stack is saturated from 10 drivers on; it measures the throughput, and the start latency
  is the queue that throughput allows.
- ``--charge-seconds S --meter-seconds 1``: each session charges S seconds of wall time with a
  meter value a second (a simulated minute each, as charge points send them), so N drivers are N
  sessions in progress at once. It measures the start latency of N concurrent drivers below
  saturation.

And one burst, ``--burst N`` (after the levels): N drivers request a session at once, and once
all charge, all stop at once, as at the end of a match or a working day. It measures how long the
N starts took, and how fast the stops settle when they come together (the drivers' stop requests
to the settlements seen in the wallet), the case batched settlement is for, and how many
settlement transactions carried them.

The simulated charge points skip the ``ocpp`` library's schema check of each message unless
``--check-messages``: they are the load, not the system under test (the gateway checks what it
receives either way), and the check was a quarter of this process's CPU on the same 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import sqlalchemy as sa
from cpu import per_session, reading
from prometheus_client.parser import text_string_to_metric_families

from chargenet.cli.network.client import (
    Driver,
    NetworkClient,
    NetworkError,
    SessionWatch,
    station_for,
)
from chargenet.cli.network.fleet import ChargingProfile, SimStation, StationEvent
from chargenet.cli.network.plan import Ports
from chargenet.cli.network.scenario import percentile
from chargenet.cli.network.supervisor import (
    SERVICES,
    Components,
    PortsBusy,
    Stack,
    down,
    start_components,
    up,
)

MAXIMUM = 20_000_000  # far above what one session here costs: no budget stop
#: Per driver: enough for a level of sessions that charge a while (~5 tokens each per 10 s).
TOP_UP = 1_000_000_000
BUSY_RETRIES = 80
BUSY_PAUSE_SECONDS = 0.25
#: The slowest starts whose steps the profile prints one by one.
SLOWEST = 3


def stations_needed(levels: Sequence[int], burst: int) -> int:
    """Two stations a driver at every level and in the warm-up's 10 (see ``run_level``), one a
    driver in the burst."""
    return max([*(2 * count for count in levels), 20, burst])


#: Any state at or past charging (a poll can miss a short-lived one).
PAST_START = ("charging", "stopping", "stopped", "priced", "settled", "refunded", "failed")


@dataclass
class Level:
    drivers: int
    sessions: int = 0
    seconds: float = 0.0
    starts: list[float] = field(default_factory=list)
    settles: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: Where the level's CPU went (``bench/cpu.py``).
    cpu: str = ""
    #: Requests answered 409 "occupied" and tried again (see ``run_level``).
    busy_retries: int = 0
    #: session id -> (REST request, RemoteStart at the charge point), for the profile.
    timeline: dict[str, tuple[datetime, datetime | None]] = field(default_factory=dict)


async def run_level(
    client: NetworkClient,
    stations: list[tuple[str, SimStation]],
    drivers: list[Driver],
    per_driver: int,
    waiting: dict[str, datetime],
    level: Level,
    arrivals: dict[str, datetime],
    charge_seconds: float = 0.0,
) -> None:
    async def request(driver: Driver, station_id: str) -> tuple[str, datetime, float]:
        """The session, its request's time and clock. A driver who starts again at once may
        find the connector still occupied in the registry (its Available status on its way
        from the charge point): the app says so and the driver tries again a moment later."""
        for _ in range(BUSY_RETRIES):
            requested = datetime.now(UTC)
            clock = time.monotonic()
            waiting[driver.id_token] = requested
            try:
                return await client.request_session(driver, station_id, MAXIMUM), requested, clock
            except NetworkError as error:
                if error.status != 409 or "occupied" not in str(error):
                    raise
                level.busy_retries += 1
                await asyncio.sleep(BUSY_PAUSE_SECONDS)
        raise NetworkError(f"{station_id} still occupied after {BUSY_RETRIES} tries")

    async def one(driver: Driver, own: list[str], first: float) -> None:
        await asyncio.sleep(first)
        for number in range(per_driver):
            station_id = own[number % len(own)]
            try:
                session, requested, clock = await request(driver, station_id)
                # The session's event stream, as the driver app follows it (polling only if the
                # stream fails): polling every driver's session loaded the wallet for nothing.
                async with client.watch(driver, session) as watch:
                    view = await watch.until(PAST_START)
                    # The RemoteStart came before the session charged (it may beat the REST
                    # answer).
                    level.timeline[session] = (requested, arrivals.pop(driver.id_token, None))
                    if view["state"] == "charging":
                        await asyncio.sleep(charge_seconds)
                        await client.stop_session(driver, session)
                    final = await watch.until(("settled", "refunded", "failed"))
            except Exception as error:
                level.failures.append(f"{type(error).__name__}: {error}")
                continue
            if final["state"] != "settled":
                level.failures.append(f"{session}: {final['state']} {final['reason']}")
                continue
            level.sessions += 1
            level.settles.append(time.monotonic() - clock)

    # Drivers who charge a while arrive spread over one session's length, as drivers do; all
    # at once, each session's start would meet all the others' every time round.
    spread = charge_seconds / len(drivers)
    # Each driver takes turns at its stations (two when there are enough), so its next session
    # does not wait for the last one's Available status to reach the registry.
    count = len(drivers)
    started = time.monotonic()
    await asyncio.gather(
        *(
            one(d, [station_id for station_id, _s in stations[index::count]], index * spread)
            for index, d in enumerate(drivers)
        )
    )
    level.seconds = time.monotonic() - started


@dataclass
class Burst:
    """Sessions requested at once, and once all charged, stopped at once."""

    sessions: list[str] = field(default_factory=list)
    #: From the requests to the last session charging, and the CPU that took.
    start_seconds: float = 0.0
    start_cpu: str = ""
    #: From the stops to the last settlement; each one's time from the stops.
    #: session id -> when its stop was requested, and when the driver saw it settled.
    stops: dict[str, datetime] = field(default_factory=dict)
    seen: dict[str, datetime] = field(default_factory=dict)
    #: session id -> its charge point's RemoteStop and stop times (``remote_stop``,
    #: ``cp_stopped``).
    at_station: dict[str, dict[str, datetime]] = field(default_factory=dict)
    seconds: float = 0.0
    settles: list[float] = field(default_factory=list)
    #: Each settled session's own time, from its stop request to the driver seeing it settled,
    #: in the order the stops were sent.
    latencies: list[float] = field(default_factory=list)
    #: Stops a second the drivers sent (0: all at once).
    stop_rate: float = 0.0
    failures: list[str] = field(default_factory=list)
    cpu: str = ""
    #: How late the harness's own loop woke, s, sampled through the stops: the simulated
    #: charge points and drivers share it, so a late loop is latency no service caused.
    loop_lag: list[float] = field(default_factory=list)
    #: The gateways' own answer times through the stops, per action.
    gateway_answers: str = ""


async def loop_lag(lags: list[float], every: float = 0.01) -> None:
    while True:
        asked = time.monotonic()
        await asyncio.sleep(every)
        lags.append(time.monotonic() - asked - every)


async def run_burst(
    client: NetworkClient,
    stations: list[tuple[str, SimStation]],
    drivers: list[Driver],
    charge_seconds: float,
    processes: dict[str, dict[str, Any]],
    at_station: dict[str, dict[str, datetime]],
    stop_rate: float = 0.0,
    gateway_metrics: Sequence[str] = (),
) -> Burst:
    """``at_station``: charge point id -> its latest ``remote_stop`` and ``cp_stopped`` times,
    filled by the stations' listener. ``stop_rate``: the stops come evenly spaced at that many a
    second instead of all at once, an open load the stack must keep up with."""
    burst = Burst(stop_rate=stop_rate)
    async with AsyncExitStack() as streams:

        async def start(driver: Driver, station_id: str) -> tuple[str, SessionWatch] | None:
            try:
                session = await client.request_session(driver, station_id, MAXIMUM)
                watch = await streams.enter_async_context(client.watch(driver, session))
                view = await watch.until(PAST_START)
            except Exception as error:
                burst.failures.append(f"{type(error).__name__}: {error}")
                return None
            if view["state"] != "charging":
                burst.failures.append(f"{session}: {view['state']} before the stop")
                return None
            burst.sessions.append(session)
            return session, watch

        before = reading(processes)
        first = time.monotonic()
        started = await asyncio.gather(
            *(start(d, station_id) for d, (station_id, _s) in zip(drivers, stations, strict=False))
        )
        burst.start_seconds = time.monotonic() - first
        burst.start_cpu = per_session(before, reading(processes), len(burst.sessions))
        charging = [
            (d, station.charge_point_id, *s)
            for d, (_id, station), s in zip(drivers, stations, started, strict=False)
            if s is not None
        ]
        print(f"burst: {len(charging)} charging, all stop in {charge_seconds:.0f} s", flush=True)
        await asyncio.sleep(charge_seconds)
        handled_before = handler_buckets(gateway_metrics)
        before = reading(processes)
        first = time.monotonic()

        async def stop(
            index: int, driver: Driver, _cp: str, session: str, watch: SessionWatch
        ) -> None:
            if stop_rate:
                await asyncio.sleep(first + index / stop_rate - time.monotonic())
            try:
                burst.stops[session] = datetime.now(UTC)
                asked = time.monotonic()
                await client.stop_session(driver, session)
                final = await watch.until(("settled", "refunded", "failed"))
                burst.seen[session] = datetime.now(UTC)
            except Exception as error:
                burst.failures.append(f"{type(error).__name__}: {error}")
                return
            if final["state"] != "settled":
                burst.failures.append(f"{session}: {final['state']} {final['reason']}")
                return
            burst.settles.append(time.monotonic() - first)
            timed[index] = time.monotonic() - asked

        timed: dict[int, float] = {}
        lag = asyncio.create_task(loop_lag(burst.loop_lag))
        try:
            await asyncio.gather(*(stop(i, *c) for i, c in enumerate(charging)))
        finally:
            lag.cancel()
        burst.latencies = [timed[i] for i in sorted(timed)]
        burst.seconds = time.monotonic() - first
        for _d, charge_point, session, _w in charging:
            burst.at_station[session] = dict(at_station.get(charge_point, {}))
        burst.cpu = per_session(before, reading(processes), len(burst.settles))
        burst.gateway_answers = answer_times(handled_before, handler_buckets(gateway_metrics))
    return burst


#: The gateways' time from a charge point's message arriving to its answer being written.
HANDLER_BUCKETS = "chargenet_gateway_handler_latency_seconds_bucket"


def handler_buckets(urls: Sequence[str]) -> Counter[tuple[str, float]]:
    """(action, bucket bound) -> messages answered within it, summed over the gateways."""
    counts: Counter[tuple[str, float]] = Counter()
    for url in urls:
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == HANDLER_BUCKETS:
                    key = (sample.labels["action"], float(sample.labels["le"]))
                    counts[key] += int(sample.value)
    return counts


def answer_times(before: Counter[tuple[str, float]], after: Counter[tuple[str, float]]) -> str:
    """Per action, how many messages the gateways answered in between and the bucket bound
    within which half and 99 % of them were answered."""
    parts = []
    for action in sorted({a for a, _le in after}):
        bounds = sorted(le for a, le in after if a == action)
        within = [(le, after[action, le] - before[action, le]) for le in bounds]
        total = within[-1][1] if within else 0
        if not total:
            continue
        p50 = next(le for le, n in within if n >= 0.5 * total)
        p99 = next(le for le, n in within if n >= 0.99 * total)
        parts.append(f"{action} {total} (half within {p50 * 1000:g} ms, 99 % {p99 * 1000:g})")
    return ", ".join(parts)


async def bench(
    stack: Stack,
    levels: list[int],
    per_driver: int,
    warmup: int = 0,
    charge_seconds: float = 0.0,
    meter_seconds: float = 0.3,
    burst: int = 0,
    stop_rate: float = 0.0,
    check_messages: bool = False,
) -> tuple[list[Level], Burst | None]:
    client = NetworkClient(stack.endpoints, stack.jwt_secret)
    waiting: dict[str, datetime] = {}
    arrivals: dict[str, datetime] = {}  # id token -> its latest RemoteStart
    current: list[Level] = []

    at_station: dict[str, dict[str, datetime]] = {}

    def on_event(event: StationEvent) -> None:
        if event.kind in ("remote_stop", "stopped"):
            mark = "remote_stop" if event.kind == "remote_stop" else "cp_stopped"
            at_station.setdefault(event.charge_point_id, {})[mark] = event.at
        requested = waiting.pop(event.id_token, None) if event.kind == "remote_start" else None
        if requested is not None and current:
            current[-1].starts.append((event.at - requested).total_seconds())
            arrivals[event.id_token] = event.at

    stations: list[tuple[str, SimStation]] = []
    wanted = stations_needed(levels, burst)
    try:
        for index in range(wanted):
            cpo = stack.cpos[index % 2]
            cp = cpo.charge_points[index // 2]
            urls = stack.endpoints.gateways[cpo.cpo_id]
            station = station_for(
                cpo,
                cp,
                urls[(index // 2) % len(urls)],
                stack.meter_seed,
                profile=ChargingProfile(
                    power_w=cpo.power_w,
                    tick_seconds=meter_seconds,
                    speedup=60 / meter_seconds,  # a meter value a simulated minute
                ),
                listener=on_event,
                check_messages=check_messages,
            )
            stations.append((cpo.station_id(cp), station))
        for batch in range(0, wanted, 20):
            chunk = stations[batch : batch + 20]
            await asyncio.gather(
                *(
                    client.register_station(
                        stack.cpos[i % 2], s.charge_point_id, i, stack.meter_seed
                    )
                    for i, (_id, s) in enumerate(chunk, start=batch)
                )
            )
        # A few at a time: each first login costs a deliberate scrypt check at the gateway.
        for batch in range(0, wanted, 10):
            await asyncio.gather(*(s.connect() for _id, s in stations[batch : batch + 10]))
        await asyncio.gather(*(client.wait_available(station_id) for station_id, _s in stations))
        # A few at a time too: each account costs the wallet an argon2id hash (memory-hard).
        drivers: list[Driver] = []
        for batch in range(0, wanted, 10):
            count = min(10, wanted - batch)
            drivers += await asyncio.gather(*(client.driver() for _ in range(count)))
        for batch in range(0, wanted, 20):
            await asyncio.gather(*(client.top_up(d, TOP_UP) for d in drivers[batch : batch + 20]))
        print(f"{wanted} stations online, {wanted} drivers topped up", flush=True)
        if warmup:
            # Not counted: a broker (and node) started just before spends its first minutes
            # compiling its hot paths; measured here, the Kafka broker's CPU per session fell
            # from 70-95 ms on its first runs to 30-40 ms once warm.
            count = min(10, wanted)
            warm = Level(count)
            current.append(warm)
            await run_level(
                client, stations[: 2 * count], drivers[:count], warmup, waiting, warm, arrivals
            )
            print(f"warm-up: {warm.sessions} sessions in {warm.seconds:.1f} s (not counted)")
        results = []
        for count in levels:
            level = Level(count)
            current.append(level)
            before = reading(stack.processes)
            await run_level(
                client,
                stations[: 2 * count],
                drivers[:count],
                per_driver,
                waiting,
                level,
                arrivals,
                charge_seconds=charge_seconds,
            )
            level.cpu = per_session(before, reading(stack.processes), level.sessions)
            results.append(level)
            print(describe(level), flush=True)
        stopped = None
        if burst:
            stopped = await run_burst(
                client,
                stations[:burst],
                drivers[:burst],
                charge_seconds,
                stack.processes,
                at_station,
                stop_rate,
                [url for name, url in stack.endpoints.metrics.items() if "gateway" in name],
            )
        print(f"session waits that fell back to polling: {client.stream_fallbacks}", flush=True)
        return results, stopped
    finally:
        await asyncio.gather(*(s.close() for _id, s in stations), return_exceptions=True)
        await client.aclose()


#: The start path, step by step: (label, the step's end) from the services' own tables.
STEPS = (
    ("REST request -> wallet outbox row (wallet: signature, registry, balance)", "wallet_row"),
    ("-> published (wallet outbox relay)", "wallet_published"),
    ("-> handled by the escrow (Kafka hop, escrow consumer)", "escrow_inbox"),
    ("-> open staged (escrow worker: window, pre-check)", "op_staged"),
    ("-> signed and stored by the signer (escrow sender, gRPC, gas estimate)", "signer_row"),
    ("-> decided in the signer (broadcast, mined, tracker)", "signer_final"),
    ("-> open FINAL applied (signer's stream, escrow)", "op_final"),
    ("-> start command in the outbox", "command_row"),
    ("-> published (escrow outbox relay)", "command_published"),
    ("-> RemoteStart at the charge point (Kafka hop, gateway, OCPP)", "arrived"),
)


Marks = dict[str, dict[str, datetime]]  # session id -> step -> when it ended


def wallet_event_marks(db: sa.Connection, marks: Marks, kind: str) -> dict[str, str]:
    """Each session's ``kind`` event (e.g. ``requested``) from the wallet's outbox: when it was
    stored and published (``wallet_row``, ``wallet_published``). Returns event id -> session."""
    events: dict[str, str] = {}
    for key, created, published, payload in db.execute(
        sa.text(
            "SELECT key, created_at, published_at, payload FROM outbox "
            "WHERE topic = 'sessions' AND key = ANY(:ids)"
        ),
        {"ids": list(marks)},
    ):
        envelope = json.loads(bytes(payload))
        if envelope["type"].endswith(f".{kind}.v1"):
            marks[key].update(wallet_row=created, wallet_published=published)
            events[envelope["id"]] = key
    return events


def escrow_marks(db: sa.Connection, marks: Marks, events: dict[str, str], action: str) -> None:
    """When the escrow handled each session's event (``escrow_inbox``) and stored and
    published its ``action`` command (``command_row``, ``command_published``)."""
    for event_id, processed in db.execute(
        sa.text("SELECT event_id, processed_at FROM inbox WHERE event_id = ANY(:ids)"),
        {"ids": list(events)},
    ):
        marks[events[event_id]]["escrow_inbox"] = processed
    for created, published, payload in db.execute(
        sa.text(
            "SELECT created_at, published_at, payload FROM outbox "
            "WHERE topic LIKE '%gateway-commands%'"
        )
    ):
        data = json.loads(bytes(payload))["data"]
        session = data.get("session_id")
        if data.get("action") == action and session in marks:
            marks[session].update(command_row=created, command_published=published)


def step_lines(path: str, steps: Sequence[tuple[str, str]], first: str, marks: Marks) -> list[str]:
    """Median and p99 of each step (label, its end) over the sessions that have both ends."""
    lines = [
        f"{path} of {len(marks)} sessions, ms (median / p99 of each step; "
        "when the step's first and last session got there, s after the first began):"
    ]
    ends = [first] + [end for _label, end in steps]
    # Where the last session of a burst waited says which stage holds the whole burst back.
    began = min((m[first] for m in marks.values() if m.get(first)), default=None)
    for (label, end), previous in zip(steps, ends, strict=False):
        spans = [
            (m[end] - m[previous]).total_seconds()
            for m in marks.values()
            if m.get(end) and m.get(previous)
        ]
        if spans and began is not None:
            p50, p99 = percentile(spans, 0.5) * 1000, percentile(spans, 0.99) * 1000
            reached = [(m[end] - began).total_seconds() for m in marks.values() if m.get(end)]
            lines.append(
                f"  {label}: {p50:.0f} / {p99:.0f} ({min(reached):.2f}-{max(reached):.2f} s)"
            )
    return lines


def profile(level: Level, postgres_url: str, prefix: str) -> list[str]:
    """Median and p99 of each step of the start path over the level's started sessions."""
    base = sa.make_url(postgres_url)
    marks: Marks = {
        session: {"requested": requested, **({"arrived": arrived} if arrived else {})}
        for session, (requested, arrived) in level.timeline.items()
    }
    ids = list(marks)
    if not ids:
        return []
    open_ops: dict[str, list[str]] = {}  # the escrow's open operation -> its sessions
    wallet = sa.create_engine(base.set(database=f"{prefix}_wallet"))
    escrow = sa.create_engine(base.set(database=f"{prefix}_escrow"))
    signer = sa.create_engine(base.set(database=f"{prefix}_signer"))
    try:
        with wallet.connect() as db:
            requested = wallet_event_marks(db, marks, "requested")
        with escrow.connect() as db:
            escrow_marks(db, marks, requested, "RemoteStartTransaction")
            for session, op, created, updated in db.execute(
                sa.text(
                    "SELECT s.session_id, o.id, o.created_at, o.updated_at FROM escrow_sessions s "
                    "JOIN escrow_chain_ops o ON o.id = s.open_op WHERE s.session_id = ANY(:ids)"
                ),
                {"ids": ids},
            ):
                marks[session].update(op_staged=created, op_final=updated)
                open_ops.setdefault(op, []).append(session)
        with signer.connect() as db:
            # The operation's id is its idempotency key at the signer.
            for key, created, updated in db.execute(
                sa.text(
                    "SELECT idempotency_key, created_at, updated_at FROM signer_transactions "
                    "WHERE idempotency_key = ANY(:ops) AND status <> 'FAILED'"
                ),
                {"ops": list(open_ops)},
            ):
                for session in open_ops[key]:
                    marks[session].update(signer_row=created, signer_final=updated)
    finally:
        wallet.dispose()
        escrow.dispose()
        signer.dispose()
    lines = step_lines("start path", STEPS, "requested", marks)
    ends = ["requested"] + [end for _label, end in STEPS]
    # The p99 is a few sessions: where theirs went, step by step, says which steps made it.
    whole = [m for m in marks.values() if all(m.get(end) for end in ends)]
    whole.sort(key=lambda m: m["arrived"] - m["requested"], reverse=True)
    for m in whole[:SLOWEST]:
        steps = [(m[end] - m[previous]).total_seconds() * 1000 for previous, end in pairwise(ends)]
        total = (m["arrived"] - m["requested"]).total_seconds() * 1000
        lines.append(f"  a slow start, {total:.0f} ms: " + " + ".join(f"{s:.0f}" for s in steps))
    return lines


#: The stop path, step by step: (label, the step's end).
STOP_STEPS = (
    ("stop request -> wallet outbox row", "wallet_row"),
    ("-> published (wallet outbox relay)", "wallet_published"),
    ("-> handled by the escrow (Kafka hop, escrow consumer)", "escrow_inbox"),
    ("-> stop command published (escrow outbox relay)", "command_published"),
    ("-> RemoteStop at the charge point (Kafka hop, gateway, OCPP)", "remote_stop"),
    ("-> the charge point sends its stop (signs its last meter value)", "cp_sent_stop"),
    ("-> priced (gateway, Kafka hop, escrow consumer: OCMF check, tariff)", "priced"),
    ("-> settled (escrow worker, signer, chain)", "settled"),
    ("-> seen by the driver (wallet consumer, event stream)", "seen"),
)


def settlements(burst: Burst, postgres_url: str, prefix: str) -> list[str]:
    """The burst's stop path step by step (median / p99 of each, from the services' tables),
    and how many settlement transactions carried its sessions."""
    base = sa.make_url(postgres_url)
    ids = list(burst.stops)
    marks: Marks = {
        session: {
            "stopped": stopped,
            **burst.at_station.get(session, {}),
            **({"seen": burst.seen[session]} if session in burst.seen else {}),
        }
        for session, stopped in burst.stops.items()
    }
    wallet = sa.create_engine(base.set(database=f"{prefix}_wallet"))
    escrow = sa.create_engine(base.set(database=f"{prefix}_escrow"))
    try:
        with wallet.connect() as db:
            stops = wallet_event_marks(db, marks, "stop_requested")
        with escrow.connect() as db:
            escrow_marks(db, marks, stops, "RemoteStopTransaction")
            rows = db.execute(
                sa.text(
                    "SELECT session_id, close_op, stopped_at, updated_at FROM escrow_sessions "
                    "WHERE session_id = ANY(:ids) AND state = 'SETTLED'"
                ),
                {"ids": ids},
            ).all()
            # The charge point's own clock, stamped as it built its stop message.
            for session, measured in db.execute(
                sa.text(
                    "SELECT session_id, measured_at FROM escrow_meter_samples "
                    "WHERE session_id = ANY(:ids) AND kind = 'stop'"
                ),
                {"ids": ids},
            ):
                marks[session]["cp_sent_stop"] = measured
    finally:
        wallet.dispose()
        escrow.dispose()
    for session, _op, priced, settled in rows:
        marks[session].update(priced=priced, settled=settled)
    lines = step_lines("stop path", STOP_STEPS, "stopped", marks)
    answered = [
        (m["cp_stopped"] - m["cp_sent_stop"]).total_seconds() * 1000
        for m in marks.values()
        if m.get("cp_stopped") and m.get("cp_sent_stop")
    ]
    if answered:
        lines.append(
            "  (aside: the gateway's answer to the stop, at the charge point, "
            f"{percentile(answered, 0.5):.0f} / {percentile(answered, 0.99):.0f} after it was sent)"
        )
    sizes = sorted(Counter(op for _s, op, _p, _t in rows).values(), reverse=True)
    lines.append(f"settlement transactions: {len(sizes)}, sessions in each: {sizes}")
    return lines


def middle_rate(settles: Sequence[float]) -> float:
    """Settlements a second between the tenth and the ninetieth percent of them: the rate once
    the pipeline is full, without the time its first session takes to cross it or the last
    one's tail."""
    ordered = sorted(settles)
    low, high = len(ordered) // 10, len(ordered) * 9 // 10
    span = ordered[high - 1] - ordered[low] if high - 1 > low else 0.0
    return (high - 1 - low) / span if span else 0.0


def describe_burst(burst: Burst) -> str:
    rate = len(burst.settles) / burst.seconds if burst.seconds else 0.0
    l50, l99 = percentile(burst.latencies, 0.5), percentile(burst.latencies, 0.99)
    halves = (
        burst.latencies[: len(burst.latencies) // 2],
        burst.latencies[len(burst.latencies) // 2 :],
    )
    sent = sorted(burst.stops.values())
    spread = (sent[-1] - sent[0]).total_seconds() if len(sent) > 1 else 0.0
    how = (
        f"at {burst.stop_rate:g} a second (sent at {(len(sent) - 1) / spread:.1f})"
        if burst.stop_rate and spread
        else "at once"
    )
    return (
        f"burst: requested at once, {len(burst.sessions)} charging after "
        f"{burst.start_seconds:.1f} s\n  {burst.start_cpu}\n"
        f"burst: {len(burst.sessions)} sessions stopped {how}, {len(burst.settles)} settled in "
        f"{burst.seconds:.1f} s: {rate:.2f} sessions/s, the middle 80 % "
        f"{middle_rate(burst.settles):.2f} /s (a stop to its settlement p50 {l50:.2f} s, "
        f"p99 {l99:.2f} s; p50 of the first and the second half {percentile(halves[0], 0.5):.2f}"
        f" / {percentile(halves[1], 0.5):.2f} s), {len(burst.failures)} failures\n"
        f"  the harness's loop woke late by p50 {percentile(burst.loop_lag, 0.5) * 1000:.0f} / "
        f"p99 {percentile(burst.loop_lag, 0.99) * 1000:.0f} / "
        f"max {max(burst.loop_lag, default=0.0) * 1000:.0f} ms through the stops\n"
        f"  the gateways answered, from a message's arrival to its answer written: "
        f"{burst.gateway_answers}"
    )


def describe(level: Level) -> str:
    rate = level.sessions / level.seconds if level.seconds else 0.0
    p50, p99 = percentile(level.starts, 0.5) * 1000, percentile(level.starts, 0.99) * 1000
    s50, s99 = percentile(level.settles, 0.5), percentile(level.settles, 0.99)
    return (
        f"| {level.drivers} | {level.sessions} | {level.seconds:.1f} | {rate:.2f} | "
        f"{p50:.0f} | {p99:.0f} | {s50:.2f} | {s99:.2f} | {len(level.failures)} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drivers", default="1,10,100", help="concurrency levels")
    parser.add_argument("--sessions", type=int, default=3, help="sessions per driver per level")
    parser.add_argument(
        "--warmup", type=int, default=0, help="uncounted sessions per driver first (10 drivers)"
    )
    parser.add_argument(
        "--charge-seconds", type=float, default=0.0, help="wall seconds each session charges"
    )
    parser.add_argument(
        "--meter-seconds", type=float, default=0.3, help="wall seconds between meter values"
    )
    parser.add_argument(
        "--burst", type=int, default=0, help="then N sessions charging that all stop at once"
    )
    parser.add_argument(
        "--stop-rate",
        type=float,
        default=0.0,
        help="the burst's stops evenly spaced, this many a second (default: all at once)",
    )
    parser.add_argument(
        "--check-messages",
        action="store_true",
        help="the simulated charge points check every OCPP message against its schema, as in "
        "the tests (off by default: a quarter of the harness's CPU, on the stack's 2 cores)",
    )
    parser.add_argument("--port-offset", type=int, default=15_000)
    args = parser.parse_args()
    levels = [int(n) for n in args.drivers.split(",") if n]
    components = Components.from_env() or start_components(print)
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    run_dir = os.path.join(os.getcwd(), ".run", "bench-e2e")
    prefix = f"bench_{uuid.uuid4().hex[:6]}"
    per_cpo = (stations_needed(levels, args.burst) + 1) // 2
    from pathlib import Path

    # The previous run's ports (another engineer's, taken in turn under the bench lock) may
    # still be held for a while after its stack stopped (connections closing): wait for them.
    waited_until = time.monotonic() + 120
    while True:
        try:
            stack = up(
                components,
                run_dir=Path(run_dir),
                ports=Ports().shifted(args.port_offset),
                replicas=2,
                stations=per_cpo,
                database_prefix=prefix,
            )
            break
        except PortsBusy as error:
            if time.monotonic() > waited_until:
                raise
            print(f"{error}: waiting", flush=True)
            time.sleep(5)
    try:
        print("| drivers | settled | seconds | sessions/s | start p50 ms | start p99 ms "
              "| settle p50 s | settle p99 s | failures |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        results, burst = asyncio.run(
            bench(
                stack,
                levels,
                args.sessions,
                warmup=args.warmup,
                charge_seconds=args.charge_seconds,
                meter_seconds=args.meter_seconds,
                burst=args.burst,
                stop_rate=args.stop_rate,
                check_messages=args.check_messages,
            )
        )
        profiles = [profile(level, components.postgres_url, prefix) for level in results]
        carried = settlements(burst, components.postgres_url, prefix) if burst else []
    finally:
        down(Path(run_dir))
        admin = sa.create_engine(components.postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for service in SERVICES:
                connection.execute(
                    sa.text(f'DROP DATABASE IF EXISTS "{prefix}_{service}" WITH (FORCE)')
                )
        admin.dispose()
    print(f"load average at the end: {os.getloadavg()}")
    for level, lines in zip(results, profiles, strict=True):
        print(describe(level))
        for failure in level.failures[:5]:
            print(f"  failure: {failure}")
        print(f"  {level.cpu}")
        print(f"  requests tried again on 409 'connector occupied': {level.busy_retries}")
        print("\n".join(lines))
    if burst:
        print(describe_burst(burst))
        for failure in burst.failures[:5]:
            print(f"  failure: {failure}")
        print(f"  {burst.cpu}")
        print("\n".join(f"  {line}" for line in carried))
    failed = any(level.failures for level in results) or (burst and burst.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
