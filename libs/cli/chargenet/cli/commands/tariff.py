"""``chargenet tariff price --tariff T.json --cdr C.json``: recompute a session's price.

The same engine the escrow settles with, so any CPO or driver can check a settled amount from the
published tariff and the CDR. Prints the totals as JSON: each amount rounded once to the
currency's minor unit as settled and invoiced (``"incl_vat": 14.13``), its integer token base
units, and the exact value before rounding (``"exact_incl_vat": 14.125``), plus the VAT per rate.
Exits 2 with one line on stderr when an input is unreadable or invalid (an unknown currency too).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError

from chargenet.core.pricing import Cdr, PricingError, Tariff, dumps, price_cdr

M = TypeVar("M", bound=BaseModel)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("tariff", help="tariff tools (price a CDR)")
    commands = parser.add_subparsers(dest="tariff_command", required=True, metavar="ACTION")
    price = commands.add_parser("price", help="price a CDR under a tariff; prints JSON totals")
    price.add_argument("--tariff", required=True, type=Path, help="OCPI Tariff JSON file")
    price.add_argument("--cdr", required=True, type=Path, help="OCPI CDR JSON file")
    price.add_argument(
        "--time-zone",
        default="UTC",
        help="IANA time zone of the location, for time-of-day restrictions (default UTC)",
    )
    price.set_defaults(handler=_price)


def _price(args: argparse.Namespace) -> int:
    try:
        zone = _zone(args.time_zone)
        tariff = _load(args.tariff, Tariff, "tariff")
        cdr = _load(args.cdr, Cdr, "CDR")
        result = price_cdr(tariff, cdr, time_zone=zone)
    except (_InputError, PricingError) as error:
        print(f"tariff price: {error}", file=sys.stderr)
        return 2
    print(dumps(result.to_json()))
    return 0


class _InputError(Exception):
    pass


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _InputError(f"unknown time zone {name!r}") from None


def _load(path: Path, model: type[M], what: str) -> M:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise _InputError(f"cannot read the {what} file {path}: {error.strerror}") from None
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or '(document)'}: {item['msg']}"
            for item in error.errors()
        )
        raise _InputError(f"{path} is not a valid OCPI {what}: {problems}") from None
