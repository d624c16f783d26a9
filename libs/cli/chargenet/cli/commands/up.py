"""``chargenet up``: the distributed stack on this machine (``chargenet.cli.network.supervisor``).

Starts Kafka, PostgreSQL and the Hardhat node with ``scripts/components/components.sh`` (unless
``--no-components``: then ``CHARGENET_TEST_KAFKA/_POSTGRES_URL/_RPC_URL`` name running ones),
deploys the contracts, and runs each service as its own process, the gateway as replicas; returns
once every process answers ``/readyz``. ``chargenet down`` stops them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chargenet.cli.network.plan import Ports
from chargenet.cli.network.supervisor import (
    Components,
    SupervisorError,
    default_run_dir,
    start_components,
    up,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("up", help="run the distributed stack (a process per service)")
    parser.add_argument(
        "--no-components",
        action="store_true",
        help="use the running components named by CHARGENET_TEST_* instead of starting them",
    )
    parser.add_argument("--replicas", type=int, default=2, help="gateway replicas per CPO")
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="state, pids and logs (default .run/network)"
    )
    parser.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="shift every listening port by this much (0-15484)",
    )
    parser.set_defaults(handler=_up)


def _up(args: argparse.Namespace) -> int:
    if not 1 <= args.replicas <= 8:
        print("up: --replicas must be 1-8", file=sys.stderr)
        return 2
    try:
        if args.no_components:
            components = Components.from_env()
            if components is None:
                print(
                    "up: --no-components needs CHARGENET_TEST_KAFKA, CHARGENET_TEST_POSTGRES_URL "
                    'and CHARGENET_TEST_RPC_URL (eval "$(scripts/components/components.sh env)")',
                    file=sys.stderr,
                )
                return 2
        else:
            components = start_components(print)
        stack = up(
            components,
            run_dir=args.run_dir or default_run_dir(),
            ports=Ports().shifted(args.port_offset),
            replicas=args.replicas,
        )
    except (SupervisorError, ConnectionError) as error:
        print(f"up: {error}", file=sys.stderr)
        return 1
    endpoints = stack.endpoints
    print(f"wallet    {endpoints.wallet}\nregistry  {endpoints.registry}")
    print(f"invoicing {endpoints.invoicing}\nescrow    {endpoints.escrow} (ops)")
    for cpo_id, urls in endpoints.gateways.items():
        print(f"gateway   {cpo_id}: {' '.join(urls)}")
    print(f"logs      {stack.run_dir / 'logs'}; stop with `chargenet down`")
    return 0
