"""registry_0002 on an index that registry_0001 holds (SQLite and PostgreSQL): the stations read
the same through the view, each station's newest version is the one flagged latest, and the
downgrade gives the table back with the same rows."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import command

from chargenet.core.db import Database
from chargenet.core.db.migrations import alembic_config
from chargenet.registry.main import MIGRATIONS

HASH = "0x" + "11" * 32
STATE = {
    "cpo_address": "0x" + "ab" * 20,
    "station_index": 1,
    "latitude_e6": 52_520_008,
    "longitude_e6": 13_404_954,
    "connector_count": 2,
    "tariff_id": "T",
    "tariff_hash": HASH,
    "meter_key_hash": HASH,
}


def _version(
    block: int, log_index: int, station_id: str, kind: str, **state: Any
) -> dict[str, Any]:
    return {
        "block_number": block,
        "log_index": log_index,
        "block_hash": HASH,
        "tx_hash": f"0x{block:064x}",
        "station_id": station_id,
        "kind": kind,
        "changed_by": STATE["cpo_address"],
        **STATE,
        **state,
    }


def _station(station_id: str, registered: int, updated: int, **state: Any) -> dict[str, Any]:
    return {
        "station_id": station_id,
        **STATE,
        **state,
        "registered_block": registered,
        "updated_block": updated,
        "tx_hash": f"0x{updated:064x}",
    }


def _stations(db: Database) -> list[tuple[Any, ...]]:
    with db.engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT station_id, active, max_power_w, registered_block, updated_block, tx_hash"
                " FROM registry_stations ORDER BY station_id"
            )
        )
        return [(r[0], bool(r[1]), *r[2:]) for r in rows]


def test_latest_flag_migration_keeps_the_stations(database: Database) -> None:
    config = alembic_config(database, MIGRATIONS)
    command.upgrade(config, "registry_0001")
    versions = [
        _version(10, 0, "A", "registered", active=True, max_power_w=50_000),
        _version(10, 1, "A", "updated", active=True, max_power_w=22_000),  # same block, later
        _version(12, 3, "A", "retired", active=False, max_power_w=22_000),
        _version(11, 0, "B", "registered", active=True, max_power_w=150_000),
    ]
    stations = [
        _station("A", 10, 12, active=False, max_power_w=22_000),
        _station("B", 11, 11, active=True, max_power_w=150_000),
    ]
    with database.engine.begin() as connection:
        connection.execute(
            sa.table("registry_station_versions", *map(sa.column, versions[0])).insert(), versions
        )
        connection.execute(
            sa.table("registry_stations", *map(sa.column, stations[0])).insert(), stations
        )
    before = _stations(database)
    assert before == [
        ("A", False, 22_000, 10, 12, f"0x{12:064x}"),
        ("B", True, 150_000, 11, 11, f"0x{11:064x}"),
    ]

    command.upgrade(config, "heads")
    assert _stations(database) == before
    with database.engine.connect() as connection:
        flagged = connection.execute(
            sa.text(
                "SELECT station_id, block_number, log_index, registered_block"
                " FROM registry_station_versions WHERE latest ORDER BY station_id"
            )
        ).all()
    assert [tuple(row) for row in flagged] == [("A", 12, 3, 10), ("B", 11, 0, 11)]

    command.downgrade(config, "registry_0001")
    assert _stations(database) == before
    columns = {
        c["name"] for c in sa.inspect(database.engine).get_columns("registry_station_versions")
    }
    assert "latest" not in columns and "registered_block" not in columns
