"""What a hot-path statement costs SQLAlchemy before it reaches the database: its cache key.

    uv run python bench/statements.py

A statement object works its cache key out once and keeps it; one built anew for every call
works it out every time (and is built every time). The services build the statements of their
hot paths once, at import; this prints, for each, the cost of the key worked out anew (what a
statement built per call pays on top of building it) against the kept one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.sql.cache_key import HasCacheKey
from sqlalchemy.sql.expression import Executable

from chargenet.core.db import outbox
from chargenet.escrow import handlers
from chargenet.invoicing import issuing
from chargenet.registry import query
from chargenet.wallet import accounts, projection, sessions, signals
from chargenet.wallet.models import BillingDetails, Driver

ROUNDS = 2000
STATEMENTS: dict[str, Executable] = {
    "wallet: a request's driver, locked (a join)": sessions._DRIVER_LOCKED,
    "wallet: a driver's open sessions": sessions._OPEN_OR_KEYED,
    "wallet: a repeated request": sessions._KEYED,
    "wallet: a driver by id": accounts._DRIVER_BY_ID,
    "wallet: a session's samples": projection._SAMPLES,
    "wallet: the streams' version poll": signals._VERSIONS,
    "registry: a station's connectors": query._CONNECTORS,
    "registry: a station's operators": query._OPERATOR_CHANGES,
    "registry: a station's open sessions": query._OPEN_SESSIONS,
    "escrow: a request's clashes": handlers._CLASHES,
    "invoicing: the CPO's counter, locked": issuing._COUNTER_LOCKED,
    "outbox relay: the unpublished events": outbox._UNPUBLISHED,
}


def microseconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(ROUNDS):
        call()
    return (time.perf_counter() - start) / ROUNDS * 1e6


def driver_built_per_call(number: int) -> object:
    """The wallet's request statement as it was built for every request (the join, the lock)."""
    statement = (
        sa.select(Driver, BillingDetails)
        .outerjoin(BillingDetails, BillingDetails.driver_id == Driver.driver_id)
        .where(Driver.number == number)
        .with_for_update(of=Driver)
    )
    return statement._generate_cache_key()


def main() -> None:
    print("| statement | key worked out anew, us | key kept, us |")
    print("|---|---|---|")
    total = 0.0
    for name, statement in STATEMENTS.items():
        anew = microseconds(lambda s=statement: HasCacheKey._generate_cache_key(s))
        kept = microseconds(lambda s=statement: s._generate_cache_key())
        total += anew
        print(f"| {name} | {anew:.0f} | {kept:.1f} |")
    print(f"| all {len(STATEMENTS)} | {total:.0f} | - |")
    built = microseconds(lambda: driver_built_per_call(7))
    print(f"\nthe request's driver statement built and keyed per call: {built:.0f} us")


if __name__ == "__main__":
    main()
