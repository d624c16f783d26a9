"""``chargenet simulate``: simulated charge points against any OCPP gateway.

    chargenet simulate --url ws://127.0.0.1:9100/ocpp --count 10 --ocpp 1.6 --password P

Each charge point connects with Basic auth (its id and ``--password``), boots, reports its
connector Available, heartbeats, and answers a remote start with a transaction: meter values from
a power curve, each an OCMF record signed with the meter's own key (derived from ``--meter-seed``
and the id, so ``--print-keys`` tells a CPO what to register), until a remote stop or, with
``--session-readings``, until the car is full. Runs until Ctrl-C or ``--duration``. Several
``--url`` spread the charge points round-robin (gateway replicas).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time

from chargenet.cli.network.fleet import (
    OCPP_VERSIONS,
    ChargingProfile,
    SimStation,
    StationEvent,
    meter_for,
)
from chargenet.core.ocpp_sim import Endpoint


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("simulate", help="run simulated OCPP charge points")
    parser.add_argument(
        "--url",
        action="append",
        required=True,
        help="gateway WebSocket URL, e.g. ws://127.0.0.1:9100/ocpp (repeat for replicas)",
    )
    parser.add_argument("--ocpp", choices=OCPP_VERSIONS, default="1.6", help="OCPP version")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--count", type=int, default=1, help="charge points <prefix>1..N")
    who.add_argument("--ids", help="comma-separated charge point ids (instead of --count)")
    parser.add_argument("--prefix", default="CP-SIM-", help="id prefix for --count")
    parser.add_argument("--password", default=None, help="Basic auth password (security profile 1)")
    parser.add_argument(
        "--meter-seed", default="chargenet-demo", help="seed of the meters' OCMF signing keys"
    )
    parser.add_argument("--power-w", type=int, default=11_000, help="charging power (W)")
    parser.add_argument(
        "--speedup", type=float, default=60.0, help="simulated seconds per wall second"
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between meter values")
    parser.add_argument(
        "--session-readings",
        type=int,
        default=None,
        help="the car is full after this many meter values (default: charge until stopped)",
    )
    parser.add_argument("--reject", action="store_true", help="reject every remote start")
    parser.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    parser.add_argument(
        "--print-keys",
        action="store_true",
        help="print each meter's public key and on-chain hash as JSON, then exit",
    )
    parser.set_defaults(handler=_simulate)


def charge_point_ids(args: argparse.Namespace) -> list[str]:
    if args.ids:
        ids = [part.strip() for part in args.ids.split(",") if part.strip()]
        if not ids:
            raise ValueError("--ids: no charge point id given")
        return ids
    if args.count < 1:
        raise ValueError("--count must be at least 1")
    return [f"{args.prefix}{n}" for n in range(1, args.count + 1)]


def _simulate(args: argparse.Namespace) -> int:
    try:
        ids = charge_point_ids(args)
        for url in args.url:
            if not url.startswith(("ws://", "wss://")):
                raise ValueError(f"--url {url!r}: expected ws:// or wss://")
        if args.password is not None and not 16 <= len(args.password) <= 40:
            raise ValueError("--password: OCPP Basic auth passwords are 16-40 characters")
        if args.power_w <= 0 or args.speedup <= 0 or args.interval <= 0:
            raise ValueError("--power-w, --speedup and --interval must be positive")
    except ValueError as error:
        print(f"simulate: {error}", file=sys.stderr)
        return 2
    if args.print_keys:
        keys = {}
        for cp in ids:
            meter = meter_for(args.meter_seed, cp)
            keys[cp] = {
                "meter_serial": meter.serial,
                "public_key": meter.public_key_hex,
                "meter_key_hash": meter.key_hash,
            }
        print(json.dumps(keys, indent=2))
        return 0
    try:
        return asyncio.run(_run(args, ids))
    except KeyboardInterrupt:
        return 0


async def _run(args: argparse.Namespace, ids: list[str]) -> int:
    started = time.monotonic()

    def show(event: StationEvent) -> None:
        if event.kind == "meter":
            return
        detail = f" {event.energy_wh / 1000:.3f} kWh" if event.kind == "stopped" else ""
        token = f" token {event.id_token}" if event.id_token else ""
        tx = f" tx {event.transaction_id}" if event.transaction_id else ""
        elapsed = time.monotonic() - started
        line = f"[{elapsed:7.1f}s] {event.charge_point_id} {event.kind}{token}{tx}{detail}"
        print(line, flush=True)

    profile = ChargingProfile(
        power_w=args.power_w,
        tick_seconds=args.interval,
        speedup=args.speedup,
        max_ticks=args.session_readings,
    )
    stations = [
        SimStation(
            charge_point_id=cp,
            version=args.ocpp,
            endpoint=Endpoint(args.url[n % len(args.url)], password=args.password),
            meter=meter_for(args.meter_seed, cp),
            profile=profile,
            reject_start=args.reject,
            listener=show,
        )
        for n, cp in enumerate(ids)
    ]
    results = await asyncio.gather(*(s.connect() for s in stations), return_exceptions=True)
    failed = [
        (s, r) for s, r in zip(stations, results, strict=True) if isinstance(r, BaseException)
    ]
    for station, error in failed:
        print(f"{station.charge_point_id}: cannot connect: {error}", file=sys.stderr)
    online = len(stations) - len(failed)
    print(f"{online} of {len(stations)} charge points online (OCPP {args.ocpp})", flush=True)
    try:
        if online:
            if args.duration is not None:
                await asyncio.sleep(args.duration)
            else:
                await asyncio.Event().wait()
    finally:
        for station in stations:
            with contextlib.suppress(Exception):
                await station.close()
    return 0 if not failed else 1
