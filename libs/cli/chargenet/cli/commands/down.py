"""``chargenet down``: stop the distributed stack ``chargenet up`` started (and, with
``--components``, Kafka, PostgreSQL and the Hardhat node too)."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from chargenet.cli.network.supervisor import default_run_dir, down, repo_root


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("down", help="stop the distributed stack")
    parser.add_argument(
        "--components", action="store_true", help="also stop Kafka, PostgreSQL and Hardhat"
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="as given to `chargenet up`")
    parser.set_defaults(handler=_down)


def _down(args: argparse.Namespace) -> int:
    down(args.run_dir or default_run_dir())
    if args.components:
        script = repo_root() / "scripts" / "components" / "components.sh"
        return subprocess.run([str(script), "down"], check=False).returncode
    return 0
