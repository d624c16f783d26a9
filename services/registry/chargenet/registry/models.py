"""The registry's tables (migration ``registry_0001``).

``registry_station_versions`` is the append-only journal of what each applied log made of a
station (its full state after the change, keyed by block and log index); the newest version of
each station is flagged ``latest``, and ``registry_stations`` is a view of those rows (migration
``registry_0002``), so a catch-up writes one row per log. A reorg deletes the versions of the
rolled-back blocks and flags the newest of what is left, so undoing needs no inverse operations.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

BIGINT = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class RegistryBase(DeclarativeBase):
    pass


class Cursor(RegistryBase):
    """The last block applied (one row): moved in the same transaction as the index."""

    __tablename__ = "registry_cursor"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    block_number: Mapped[int] = mapped_column(sa.BigInteger)
    block_hash: Mapped[str | None] = mapped_column(sa.String(66), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class AppliedBlock(RegistryBase):
    """Hash of every block whose logs were applied, and of every cursor position: where a reorg
    search for the common ancestor looks."""

    __tablename__ = "registry_blocks"

    number: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(sa.String(66))


class StationVersion(RegistryBase):
    __tablename__ = "registry_station_versions"

    block_number: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    log_index: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    block_hash: Mapped[str] = mapped_column(sa.String(66))
    tx_hash: Mapped[str] = mapped_column(sa.String(66))
    station_id: Mapped[str] = mapped_column(sa.String(80), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # registered / updated / retired
    changed_by: Mapped[str] = mapped_column(sa.String(42))
    cpo_address: Mapped[str] = mapped_column(sa.String(42))
    station_index: Mapped[int] = mapped_column(sa.BigInteger)
    active: Mapped[bool] = mapped_column(sa.Boolean)
    latitude_e6: Mapped[int] = mapped_column(sa.Integer)
    longitude_e6: Mapped[int] = mapped_column(sa.Integer)
    connector_count: Mapped[int] = mapped_column(sa.Integer)
    max_power_w: Mapped[int] = mapped_column(sa.BigInteger)
    tariff_id: Mapped[str] = mapped_column(sa.String(80))
    tariff_hash: Mapped[str] = mapped_column(sa.String(66))
    meter_key_hash: Mapped[str] = mapped_column(sa.String(66))
    registered_block: Mapped[int] = mapped_column(sa.BigInteger)
    #: The station's newest version: the row the ``registry_stations`` view shows.
    latest: Mapped[bool] = mapped_column(sa.Boolean)

    __table_args__ = (
        sa.Index(
            "ix_registry_station_versions_latest_position",
            "latitude_e6",
            "longitude_e6",
            sqlite_where=sa.text("latest"),
            postgresql_where=sa.text("latest"),
        ),
    )


class Station(RegistryBase):
    """The station as the chain has it now: the ``registry_stations`` view of the versions
    flagged ``latest`` (read-only; the indexer writes versions)."""

    __tablename__ = "registry_stations"
    __table_args__ = {"info": {"is_view": True}}

    station_id: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    cpo_address: Mapped[str] = mapped_column(sa.String(42))
    station_index: Mapped[int] = mapped_column(sa.BigInteger)
    active: Mapped[bool] = mapped_column(sa.Boolean)
    latitude_e6: Mapped[int] = mapped_column(sa.Integer)
    longitude_e6: Mapped[int] = mapped_column(sa.Integer)
    connector_count: Mapped[int] = mapped_column(sa.Integer)
    max_power_w: Mapped[int] = mapped_column(sa.BigInteger)
    tariff_id: Mapped[str] = mapped_column(sa.String(80))
    tariff_hash: Mapped[str] = mapped_column(sa.String(66))
    meter_key_hash: Mapped[str] = mapped_column(sa.String(66))
    registered_block: Mapped[int] = mapped_column(sa.BigInteger)
    updated_block: Mapped[int] = mapped_column(sa.BigInteger)
    tx_hash: Mapped[str] = mapped_column(sa.String(66))


class OperatorChange(RegistryBase):
    """OperatorSet logs; a station's operators are the latest ``allowed`` row per operator."""

    __tablename__ = "registry_operator_changes"

    block_number: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    log_index: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    station_id: Mapped[str] = mapped_column(sa.String(80), index=True)
    operator: Mapped[str] = mapped_column(sa.String(42))
    allowed: Mapped[bool] = mapped_column(sa.Boolean)


class EscrowSession(RegistryBase):
    """An escrow session seen on chain: open until a settle/cancel/refund log closes it."""

    __tablename__ = "registry_escrow_sessions"

    session_id: Mapped[str] = mapped_column(sa.String(66), primary_key=True)
    station_id: Mapped[str] = mapped_column(sa.String(80), index=True)
    opened_block: Mapped[int] = mapped_column(sa.BigInteger, index=True)
    closed_block: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True, index=True)
    closed_as: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)


class Document(RegistryBase):
    """An off-chain document, content-addressed by the keccak of its canonical JSON."""

    __tablename__ = "registry_documents"

    hash: Mapped[str] = mapped_column(sa.String(66), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # tariff / location
    body: Mapped[str] = mapped_column(sa.Text)  # the canonical JSON
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class Location(RegistryBase):
    """The OCPI location document a CPO gave for a station, checked against the chain."""

    __tablename__ = "registry_locations"

    station_id: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    document_hash: Mapped[str] = mapped_column(sa.ForeignKey("registry_documents.hash"))
    name: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    latitude_e6: Mapped[int] = mapped_column(sa.Integer)
    longitude_e6: Mapped[int] = mapped_column(sa.Integer)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class Connector(RegistryBase):
    """One connector of a station's location document, with where its OCPP status comes from."""

    __tablename__ = "registry_connectors"

    station_id: Mapped[str] = mapped_column(
        sa.ForeignKey("registry_locations.station_id", ondelete="CASCADE"), primary_key=True
    )
    evse_uid: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    connector_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    evse_id: Mapped[str | None] = mapped_column(sa.String(48), nullable=True)
    standard: Mapped[str] = mapped_column(sa.String(40), index=True)
    power_type: Mapped[str] = mapped_column(sa.String(20))
    max_electric_power_w: Mapped[int] = mapped_column(sa.BigInteger)
    charge_point_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    ocpp_evse_id: Mapped[int] = mapped_column(sa.Integer)  # 0 for OCPP 1.6 numbering
    ocpp_connector_id: Mapped[int] = mapped_column(sa.Integer)


class ChargePoint(RegistryBase):
    """What the gateway last said about a charge point."""

    __tablename__ = "registry_charge_points"

    charge_point_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    cpo_id: Mapped[str] = mapped_column(sa.String(64))
    online: Mapped[bool] = mapped_column(sa.Boolean)
    #: The status of connector 0 (the whole charge point, OCPP 1.6), if it reported one.
    status: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    last_report_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    offline_reason: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)


class ConnectorStatus(RegistryBase):
    __tablename__ = "registry_connector_status"

    charge_point_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    ocpp_evse_id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    ocpp_connector_id: Mapped[int] = mapped_column(
        sa.Integer, primary_key=True, autoincrement=False
    )
    status: Mapped[str] = mapped_column(sa.String(32))
    error_code: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    reported_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
