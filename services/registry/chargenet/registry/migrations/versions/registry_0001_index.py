"""Registry: the chain index (cursor, block hashes, station versions and stations, operators,
escrow sessions), off-chain documents and locations, live charge point status.

Revision ID: registry_0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "registry_0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = ("registry",)
depends_on: str | Sequence[str] | None = "core_0001"

TZ = sa.DateTime(timezone=True)


def _station_columns() -> list[sa.Column[object]]:
    return [
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
    ]


def upgrade() -> None:
    op.create_table(
        "registry_cursor",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("block_number", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(66), nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "registry_blocks",
        sa.Column("number", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(66), nullable=False),
    )
    op.create_table(
        "registry_station_versions",
        sa.Column("block_number", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("log_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("block_hash", sa.String(66), nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
        sa.Column("station_id", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("changed_by", sa.String(42), nullable=False),
        *_station_columns(),
    )
    op.create_index(
        "ix_registry_station_versions_station_id", "registry_station_versions", ["station_id"]
    )
    op.create_table(
        "registry_stations",
        sa.Column("station_id", sa.String(80), primary_key=True),
        *_station_columns(),
        sa.Column("registered_block", sa.BigInteger, nullable=False),
        sa.Column("updated_block", sa.BigInteger, nullable=False),
        sa.Column("tx_hash", sa.String(66), nullable=False),
    )
    op.create_index("ix_registry_stations_cpo_address", "registry_stations", ["cpo_address"])
    op.create_index("ix_registry_stations_latitude_e6", "registry_stations", ["latitude_e6"])
    op.create_index("ix_registry_stations_longitude_e6", "registry_stations", ["longitude_e6"])
    op.create_table(
        "registry_operator_changes",
        sa.Column("block_number", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("log_index", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("station_id", sa.String(80), nullable=False),
        sa.Column("operator", sa.String(42), nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=False),
    )
    op.create_index(
        "ix_registry_operator_changes_station_id", "registry_operator_changes", ["station_id"]
    )
    op.create_table(
        "registry_escrow_sessions",
        sa.Column("session_id", sa.String(66), primary_key=True),
        sa.Column("station_id", sa.String(80), nullable=False),
        sa.Column("opened_block", sa.BigInteger, nullable=False),
        sa.Column("closed_block", sa.BigInteger, nullable=True),
        sa.Column("closed_as", sa.String(16), nullable=True),
    )
    for column in ("station_id", "opened_block", "closed_block"):
        op.create_index(
            f"ix_registry_escrow_sessions_{column}", "registry_escrow_sessions", [column]
        )
    op.create_table(
        "registry_documents",
        sa.Column("hash", sa.String(66), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "registry_locations",
        sa.Column("station_id", sa.String(80), primary_key=True),
        sa.Column(
            "document_hash",
            sa.String(66),
            sa.ForeignKey("registry_documents.hash"),
            nullable=False,
        ),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("latitude_e6", sa.Integer, nullable=False),
        sa.Column("longitude_e6", sa.Integer, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_table(
        "registry_connectors",
        sa.Column(
            "station_id",
            sa.String(80),
            sa.ForeignKey("registry_locations.station_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("evse_uid", sa.String(36), primary_key=True),
        sa.Column("connector_id", sa.String(36), primary_key=True),
        sa.Column("evse_id", sa.String(48), nullable=True),
        sa.Column("standard", sa.String(40), nullable=False),
        sa.Column("power_type", sa.String(20), nullable=False),
        sa.Column("max_electric_power_w", sa.BigInteger, nullable=False),
        sa.Column("charge_point_id", sa.String(64), nullable=False),
        sa.Column("ocpp_evse_id", sa.Integer, nullable=False),
        sa.Column("ocpp_connector_id", sa.Integer, nullable=False),
    )
    op.create_index("ix_registry_connectors_standard", "registry_connectors", ["standard"])
    op.create_index(
        "ix_registry_connectors_charge_point_id", "registry_connectors", ["charge_point_id"]
    )
    op.create_table(
        "registry_charge_points",
        sa.Column("charge_point_id", sa.String(64), primary_key=True),
        sa.Column("cpo_id", sa.String(64), nullable=False),
        sa.Column("online", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("last_report_at", TZ, nullable=False),
        sa.Column("offline_reason", sa.String(200), nullable=True),
    )
    op.create_table(
        "registry_connector_status",
        sa.Column("charge_point_id", sa.String(64), primary_key=True),
        sa.Column("ocpp_evse_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ocpp_connector_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("reported_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "registry_connector_status",
        "registry_charge_points",
        "registry_connectors",
        "registry_locations",
        "registry_documents",
        "registry_escrow_sessions",
        "registry_operator_changes",
        "registry_stations",
        "registry_station_versions",
        "registry_blocks",
        "registry_cursor",
    ):
        op.drop_table(table)
