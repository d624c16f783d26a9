"""What selecting rows by a list of keys costs the caller: an expanding ``IN`` against ``among``.

    eval "$(scripts/components/components.sh env)"   # for PostgreSQL
    uv run python bench/among.py

An expanding ``IN`` renders a placeholder (and, on PostgreSQL, a type cast) per element at every
execution; ``chargenet.core.db.database.among`` binds the list as one array on PostgreSQL and is
the same expanding ``IN`` on SQLite. Prints the caller's CPU per query, by list length, for both
backends (PostgreSQL from ``CHARGENET_TEST_POSTGRES_URL``; skipped without it).
"""

from __future__ import annotations

import os
import time

import sqlalchemy as sa

from chargenet.core.db.database import among

ROUNDS = 300
LENGTHS = (1, 20, 200)


def main() -> None:
    urls = {"sqlite": "sqlite://"}
    if postgres := os.environ.get("CHARGENET_TEST_POSTGRES_URL"):
        urls["postgresql"] = postgres.replace("postgresql://", "postgresql+psycopg://", 1)
    metadata = sa.MetaData()
    table = sa.Table(
        "bench_among",
        metadata,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    statements = {
        "expanding IN": sa.select(table.c.key, table.c.version).where(
            table.c.key.in_(sa.bindparam("keys", expanding=True))
        ),
        "among": sa.select(table.c.key, table.c.version).where(among(table.c.key, "keys")),
    }
    keys = [f"session-{n:05d}" for n in range(max(LENGTHS))]
    print("| backend | keys | expanding IN, us | among, us |")
    print("|---|---|---|---|")
    for backend, url in urls.items():
        engine = sa.create_engine(url)
        metadata.drop_all(engine)
        metadata.create_all(engine)
        try:
            with engine.begin() as connection:
                connection.execute(table.insert(), [{"key": k, "version": 1} for k in keys])
            for length in LENGTHS:
                costs = {name: _cost(engine, s, keys[:length]) for name, s in statements.items()}
                print(
                    f"| {backend} | {length} | {costs['expanding IN']:.0f} | {costs['among']:.0f} |"
                )
        finally:
            metadata.drop_all(engine)
            engine.dispose()


def _cost(engine: sa.Engine, statement: sa.Select[tuple[str, int]], keys: list[str]) -> float:
    """CPU microseconds per query (a warm-up first: the compiled form is then cached)."""
    with engine.connect() as connection:
        assert len(connection.execute(statement, {"keys": keys}).all()) == len(keys)
        started = time.process_time()
        for _ in range(ROUNDS):
            connection.execute(statement, {"keys": keys}).all()
        return (time.process_time() - started) / ROUNDS * 1e6


if __name__ == "__main__":
    main()
