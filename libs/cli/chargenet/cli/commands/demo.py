"""``chargenet demo``: the whole network on the embedded default, in one process.

Every service starts here (in-process bus, one SQLite file per service, one py-evm chain shared by
all), the contracts are deployed, two CPOs register stations through the registry, simulated
charge points connect over real OCPP WebSockets (1.6J and 2.0.1, OCMF-signed meter values), and
drivers top up and charge through the wallet's REST API: stopped by the driver, by a full car, by
the budget, and one start the charge point rejects. The report ends with the checks; the exit
code is 1 when any fails. ``--serve`` keeps everything running afterwards. ``--chain-only`` runs
the earlier single on-chain session without services.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from chargenet.cli.network import onchain
from chargenet.cli.network.client import NetworkClient
from chargenet.cli.network.embedded import EmbeddedNetwork
from chargenet.cli.network.plan import CP_PASSWORD, Ports, demo_cpos
from chargenet.cli.network.report import audit, print_report
from chargenet.cli.network.scenario import TOP_UP, DemoScenario
from chargenet.core.chain import IN_PROCESS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="every service in one process: CPOs, charge points, drivers, sessions"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(".chargenet/demo"),
        help="databases, logs and invoice PDFs (emptied first; default .chargenet/demo)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of 6 sessions (default 2)")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep the network running afterwards (REST APIs, gateways) until Ctrl-C",
    )
    parser.add_argument(
        "--chain-only",
        action="store_true",
        help="the earlier demo: one session on chain through the core library, no services",
    )
    parser.add_argument("--rpc-url", default=IN_PROCESS, help="chain for --chain-only")
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    if args.chain_only:
        return onchain.run(args.rpc_url)
    if args.rounds < 1:
        print("demo: --rounds must be at least 1", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    workdir: Path = args.workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    started = time.perf_counter()
    cpos = demo_cpos(stations=3, spare=3 if args.serve else 0)
    ports = Ports() if args.serve else Ports.ephemeral()
    network = EmbeddedNetwork(workdir, cpos, ports=ports, meter_seed="chargenet-demo")
    print(f"starting every service in this process (work directory {workdir})")
    try:
        endpoints = network.start(lambda text: print(f"  {text}"))
    except OSError as error:
        print(f"demo: cannot start the services: {error}", file=sys.stderr)
        return 1
    print(
        f"  wallet {endpoints.wallet} · registry {endpoints.registry} · invoicing "
        f"{endpoints.invoicing} · gateways {endpoints.gateways}"
    )
    try:
        return asyncio.run(_run(args, network, started))
    except KeyboardInterrupt:
        return 130
    finally:
        network.stop()


async def _run(args: argparse.Namespace, network: EmbeddedNetwork, started: float) -> int:
    assert network.endpoints is not None and network.plan is not None
    plan, endpoints = network.plan, network.endpoints
    client = NetworkClient(endpoints, network.jwt_secret)
    scenario = DemoScenario(
        client,
        plan.cpos,
        plan.meter_seed,
        rounds=args.rounds,
        invoice_dir=network.workdir / "invoices",
    )
    try:
        result = await scenario.run(endpoints.gateways)
        cpo_addresses = {c.cpo_id: plan.address_of(c.key_alias) for c in plan.cpos}
        ledger, gas, checks = audit(
            network.w3, plan.contracts, plan.first_block, cpo_addresses, result
        )
        settled = [e for e in network.bus.events("sessions") if e.type.endswith(".settled.v1")]
        verified = (sum(1 for e in settled if e.data.get("meter_verified")), len(settled))
        print_report(
            result, ledger, gas, checks, cpo_addresses, verified, time.perf_counter() - started
        )
        if args.serve:
            await _serve(network, client, scenario)
        return 0 if checks.ok else 1
    finally:
        await scenario.close()
        await client.aclose()


async def _serve(network: EmbeddedNetwork, client: NetworkClient, scenario: DemoScenario) -> None:
    """Keep running for a person: a driver with a known password, spare stations registered for
    ``chargenet simulate`` to bring online, and how to reach everything."""
    assert network.endpoints is not None and network.plan is not None
    plan, endpoints = network.plan, network.endpoints
    driver = await client.driver("driver@chargenet.example", "chargenet-demo")
    await client.top_up(driver, TOP_UP)
    spare = {}
    for cpo in plan.cpos:
        for index, cp in enumerate(cpo.charge_points[3:], start=3):
            spare[cp] = await client.register_station(cpo, cp, index, plan.meter_seed)
    info = {
        "endpoints": endpoints.to_json(),
        "driver": {"email": driver.email, "password": "chargenet-demo", "token": driver.token},
        "cpo_tokens": {c.cpo_id: client.cpo_headers(c.cpo_id)["Authorization"] for c in plan.cpos},
        "charge_point_password": CP_PASSWORD,
        "spare_stations": spare,
    }
    (network.workdir / "serve.json").write_text(json.dumps(info, indent=2))
    a, b = plan.cpos[0], plan.cpos[1]
    print(
        f"""
== serving (Ctrl-C stops) ==  details in {network.workdir / "serve.json"}
wallet    {endpoints.wallet}/docs     registry {endpoints.registry}/docs
invoicing {endpoints.invoicing}/docs  metrics  {endpoints.escrow}/metrics
driver    driver@chargenet.example / chargenet-demo (topped up with 50.00 EUR); token:
          curl -s -d 'username=driver@chargenet.example&password=chargenet-demo' \\
               {endpoints.wallet}/v1/auth/token
the demo's charge points stay online and answer remote starts; spare stations wait for theirs:
  uv run chargenet simulate --url {endpoints.gateways[a.cpo_id][0]} --ocpp 1.6 \\
      --ids {",".join(a.charge_points[3:])} --password {CP_PASSWORD}
  uv run chargenet simulate --url {endpoints.gateways[b.cpo_id][0]} --ocpp 2.0.1 \\
      --ids {",".join(b.charge_points[3:])} --password {CP_PASSWORD}
then charge:  curl -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
      -d '{{"station_id": "{spare[a.charge_points[3]]}", "connector_id": "1", "max_amount": 10000000}}' \\
      {endpoints.wallet}/v1/sessions"""  # noqa: E501 - a shell command shown as typed
    )
    await asyncio.Event().wait()  # until Ctrl-C
