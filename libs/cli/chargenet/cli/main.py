"""The ``chargenet`` command: one entry point for every service and tool.

Each sub-command lives in its own module under ``chargenet.cli.commands`` and exposes
``register(subparsers)``; adding a command means adding a module and one name below.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from chargenet.core.settings import ConfigurationError

COMMAND_MODULES = ("check", "demo", "down", "migrate", "run", "simulate", "tariff", "up")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chargenet", description="Pay-per-session EV charging, settled on chain."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"chargenet.cli.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name and error.name.startswith("chargenet.cli.commands"):
                continue  # a command whose module is not written yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except ConfigurationError as error:
        print(error.message, file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    raise SystemExit(main())
