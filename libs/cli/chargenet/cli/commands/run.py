"""``chargenet run SERVICE``: start one service in this process (its own pod in production)."""

from __future__ import annotations

import argparse
import importlib

SERVICES = ("wallet", "registry", "escrow", "gateway", "invoicing", "signer")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="run one service (configured by CHARGENET_* env)")
    parser.add_argument("service", choices=SERVICES)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"chargenet.{args.service}.main")
    result: int = module.main()
    return result
