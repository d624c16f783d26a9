"""Registry: a station's current state is its latest version row (a flag), not a second table.

``registry_stations`` becomes a view over the version rows flagged ``latest``, so the readers
(search, the API, the console) are unchanged while applying a log writes one row instead of
two. The versions get the station's ``registered_block`` (the view's column) and one partial
index on the position of the latest rows, which the distance search's bounding box uses.
The old table's index on ``cpo_address`` is not carried over: the CPO filter compares
``lower(cpo_address)``, which it never served.

Revision ID: registry_0002
Revises: registry_0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "registry_0002"
down_revision: str | None = "registry_0001"
branch_labels: Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VERSIONS = "registry_station_versions"
POSITION_INDEX = "ix_registry_station_versions_latest_position"
# The columns a station row had, in its order; the view keeps the names.
STATE = (
    "cpo_address, station_index, active, latitude_e6, longitude_e6, connector_count, "
    "max_power_w, tariff_id, tariff_hash, meter_key_hash"
)
# The same text in the partial index's predicate and the view's WHERE: SQLite uses a partial
# index only when the query has its predicate's very term.
LATEST = "latest"


def upgrade() -> None:
    op.add_column(
        VERSIONS, sa.Column("latest", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column(
        VERSIONS,
        sa.Column("registered_block", sa.BigInteger, nullable=False, server_default="0"),
    )
    # Each station's newest version is its latest; every version of a station carries the
    # block the station was registered in (a station row existed for each indexed station).
    op.execute(
        f"""
        UPDATE {VERSIONS} AS v SET
          registered_block = COALESCE(
            (SELECT s.registered_block FROM registry_stations s WHERE s.station_id = v.station_id),
            v.block_number),
          latest = NOT EXISTS (
            SELECT 1 FROM {VERSIONS} w
            WHERE w.station_id = v.station_id
              AND (w.block_number > v.block_number
                   OR (w.block_number = v.block_number AND w.log_index > v.log_index)))
        """  # noqa: S608 - constant names, no input
    )
    op.drop_table("registry_stations")
    op.create_index(
        POSITION_INDEX,
        VERSIONS,
        ["latitude_e6", "longitude_e6"],
        sqlite_where=sa.text(LATEST),
        postgresql_where=sa.text(LATEST),
    )
    op.execute(
        f"CREATE VIEW registry_stations AS SELECT station_id, {STATE}, registered_block, "
        f"block_number AS updated_block, tx_hash FROM {VERSIONS} WHERE {LATEST}"  # noqa: S608
    )


def downgrade() -> None:
    op.execute("DROP VIEW registry_stations")
    op.create_table(
        "registry_stations",
        sa.Column("station_id", sa.String(80), primary_key=True),
        sa.Column("cpo_address", sa.String(42), nullable=False),
        sa.Column("station_index", sa.BigInteger, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("latitude_e6", sa.Integer, nullable=False),
        sa.Column("longitude_e6", sa.Integer, nullable=False),
        sa.Column("connector_count", sa.Integer, nullable=False),
        sa.Column("max_power_w", sa.BigInteger, nullable=False),
        sa.Column("tariff_id", sa.String(80), nullable=False),
        sa.Column("tariff_hash", sa.String(66), nullable=False),
        sa.Column("meter_key_hash", sa.String(66), nullable=False),
        sa.Column("registered_block", sa.BigInteger, nullable=False),
        sa.Column("updated_block", sa.BigInteger, nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
    )
    op.create_index("ix_registry_stations_cpo_address", "registry_stations", ["cpo_address"])
    op.create_index("ix_registry_stations_latitude_e6", "registry_stations", ["latitude_e6"])
    op.create_index("ix_registry_stations_longitude_e6", "registry_stations", ["longitude_e6"])
    op.execute(
        f"INSERT INTO registry_stations (station_id, {STATE}, registered_block, updated_block, "
        f"tx_hash) SELECT station_id, {STATE}, registered_block, block_number, tx_hash "
        f"FROM {VERSIONS} WHERE {LATEST}"  # noqa: S608
    )
    op.drop_index(POSITION_INDEX, table_name=VERSIONS)
    op.drop_column(VERSIONS, "registered_block")
    op.drop_column(VERSIONS, "latest")
