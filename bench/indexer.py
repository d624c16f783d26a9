"""Registry indexer catch-up speed against the raw ``eth_getLogs`` speed for the same logs.

    uv run python bench/indexer.py [--events 20000] [--batch-blocks 50] [--runs 3]
                                   [--database-url postgresql://...]

Starts a private Hardhat node (from the cache ``scripts/components/components.sh install``
fills), deploys chargenet and registers ``--events`` stations, many per block (automining off,
JSON-RPC batches, ``evm_mine``). Then, over the same block ranges (``--batch-blocks`` per
``eth_getLogs``):

- raw: ``eth_getLogs`` for the registry's and escrow's event topics through the indexer's own
  ``ChainReader``, nothing else (JSON parsed, no decoding): the limit an indexer cannot beat;
- indexer: ``Indexer.catch_up`` from an empty database: the same fetch plus the reorg checks
  (both ends of every range read again, in the same JSON-RPC batch as the next range's logs),
  log decoding, station versions (the newest flagged latest), outbox events, block hashes and
  the cursor, in transactions of one range or more.

A run is one raw pass then one indexer pass (a fresh database), so both see about the same load
from whatever else the machine runs; ``--runs`` runs, and the median of the per-run ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chargenet.core.chain import Deployment
from chargenet.core.db import Database
from chargenet.core.http import settle_heap
from chargenet.registry.chain import topics_for
from chargenet.registry.indexer import Indexer
from chargenet.registry.main import migrate, tune_interpreter
from chargenet.registry.rpc import ChainReader
from tests.registry.harness import deploy, private_hardhat, register_many, station_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--per-block", type=int, default=150)
    parser.add_argument(
        "--batch-blocks", default="2,10", help="blocks per range, comma-separated for several"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file per run")
    args = parser.parse_args()
    tune_interpreter()  # as the registry service does, and as it starts serving:
    settle_heap()

    with private_hardhat() as url:
        w3, deployment = deploy(url)
        start = int(w3.eth.block_number) + 1
        started = time.perf_counter()
        last = register_many(
            w3,
            deployment,
            [station_id(n, "DE*BEN*E") for n in range(args.events)],
            senders=list(w3.eth.accounts)[1:19],
            per_block=args.per_block,
        )
        print(
            f"registered {args.events} stations in blocks {start}-{last} "
            f"({time.perf_counter() - started:.1f} s)"
        )
        reader = ChainReader(w3)

        for batch in [int(b) for b in args.batch_blocks.split(",")]:
            _measure(args, reader, deployment, start, last, batch)
    return 0


def _measure(
    args: argparse.Namespace,
    reader: ChainReader,
    deployment: Deployment,
    start: int,
    last: int,
    batch: int,
) -> None:
    addresses = [deployment.registry.address, deployment.escrow.address]
    topics = topics_for(True)
    raw_rates: list[float] = []
    index_rates: list[float] = []
    ratios: list[float] = []
    for run in range(args.runs):
        load = os.getloadavg()[0]
        started = time.perf_counter()
        count = 0
        for first in range(start, last + 1, batch):
            to = min(last, first + batch - 1)
            count += len(reader.logs(addresses, topics, first, to))
        elapsed = time.perf_counter() - started
        assert count == args.events, count
        raw_rates.append(count / elapsed)
        with tempfile.TemporaryDirectory() as folder:
            db = Database(args.database_url or f"sqlite:///{folder}/registry-{run}.db")
            if args.database_url:
                _reset(db)
            migrate(db)
            indexer = Indexer(
                db,
                reader,
                registry_address=deployment.registry.address,
                escrow_address=deployment.escrow.address,
                start_block=start,
                confirmations=0,
                batch_blocks=batch,
            )
            started = time.perf_counter()
            applied = indexer.catch_up()
            elapsed = time.perf_counter() - started
            assert applied == args.events, applied
            index_rates.append(applied / elapsed)
            db.dispose()
        ratios.append(index_rates[-1] / raw_rates[-1])
        print(
            f"  run {run + 1}: raw {raw_rates[-1]:.0f}/s, indexer {index_rates[-1]:.0f}/s, "
            f"ratio {ratios[-1]:.2f} (load average {load:.1f} -> {os.getloadavg()[0]:.1f})",
            flush=True,
        )

    backend = "PostgreSQL" if args.database_url else "SQLite (file, WAL)"
    print(f"events: {args.events}, blocks: {last - start + 1}, batch: {batch} blocks")
    print(f"raw eth_getLogs:   {statistics.median(raw_rates):8.0f} events/s (median)")
    print(f"indexer catch-up:  {statistics.median(index_rates):8.0f} events/s (median; {backend})")
    print(
        f"ratio: {statistics.median(ratios):.2f}x of the raw limit, median of the runs' "
        f"({_list(ratios)}; target >= 0.5x)",
        flush=True,
    )


def _list(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def _reset(db: Database) -> None:
    """A benchmark database starts empty every run (PostgreSQL keeps its tables otherwise)."""
    with db.engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))


if __name__ == "__main__":
    raise SystemExit(main())
