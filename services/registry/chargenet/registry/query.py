"""Reading the index: station search and one station with everything a driver's app shows.

Distance search: a bounding box on the indexed micro-degree columns narrows the rows in SQL (the
same SQL on SQLite and PostgreSQL, no geo extension), the exact great-circle distance is computed
here, and paging happens after sorting by it.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chargenet.core.db.database import among
from chargenet.registry.models import (
    ChargePoint,
    Connector,
    ConnectorStatus,
    Document,
    EscrowSession,
    Location,
    OperatorChange,
    Station,
)
from chargenet.registry.status import UNUSABLE

EARTH_RADIUS_KM = 6371.0088  # the mean radius (IUGG)
#: Parsed documents kept in memory, most recently used first out of the way.
DOCUMENTS_KEPT = 4096

# Every station lookup (one per session request) runs these: built once, so SQLAlchemy works out
# each one's cache key once instead of per call.
_OPEN_SESSIONS = (
    sa.select(sa.func.count())
    .select_from(EscrowSession)
    .where(
        EscrowSession.station_id == sa.bindparam("station_id"),
        EscrowSession.closed_block.is_(None),
    )
)
_OPERATOR_CHANGES = (
    sa.select(OperatorChange)
    .where(OperatorChange.station_id == sa.bindparam("station_id"))
    .order_by(OperatorChange.block_number, OperatorChange.log_index)
)
_CONNECTORS = (
    sa.select(Connector)
    .where(Connector.station_id == sa.bindparam("station_id"))
    .order_by(Connector.evse_uid, Connector.connector_id)
)
_CHARGE_POINTS = sa.select(ChargePoint).where(among(ChargePoint.charge_point_id, "ids"))
_STATUSES = sa.select(ConnectorStatus).where(among(ConnectorStatus.charge_point_id, "ids"))


class ParsedDocuments:
    """Location and tariff documents by hash, parsed once.

    A document is addressed by the hash of its canonical bytes, so what a hash names never
    changes: the detail of a station (read for every session request) skips two queries and two
    JSON parses. Callers must not change what they get (it is shared).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._parsed: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: Session, digest: str) -> Any | None:
        with self._lock:
            if digest in self._parsed:
                self._parsed.move_to_end(digest)
                return self._parsed[digest]
        row = session.get(Document, digest)
        if row is None:
            return None  # not indexed yet: asked again next time
        parsed = json.loads(row.body)
        with self._lock:
            self._parsed[digest] = parsed
            if len(self._parsed) > self._size:
                self._parsed.popitem(last=False)
        return parsed


documents = ParsedDocuments(DOCUMENTS_KEPT)


@dataclass(frozen=True)
class Near:
    latitude: float
    longitude: float
    radius_km: float


@dataclass(frozen=True)
class Filters:
    near: Near | None = None
    connector_type: str | None = None
    min_power_w: int | None = None
    available_now: bool = False
    cpo_address: str | None = None
    include_retired: bool = False


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _bounding_box(near: Near) -> sa.ColumnElement[bool]:
    dlat = math.degrees(near.radius_km / EARTH_RADIUS_KM)
    lat_min, lat_max = near.latitude - dlat, near.latitude + dlat
    clauses = [
        Station.latitude_e6 >= math.floor(max(-90.0, lat_min) * 1e6),
        Station.latitude_e6 <= math.ceil(min(90.0, lat_max) * 1e6),
    ]
    # Longitude degrees shrink towards the poles; near one, every longitude is in range.
    cos_lat = math.cos(math.radians(max(abs(lat_min), abs(lat_max))))
    if lat_min <= -90 or lat_max >= 90 or cos_lat < 1e-9:
        return sa.and_(*clauses)
    dlon = math.degrees(near.radius_km / (EARTH_RADIUS_KM * cos_lat))
    if dlon >= 180:
        return sa.and_(*clauses)
    west, east = near.longitude - dlon, near.longitude + dlon
    if west < -180:  # the box wraps the antimeridian
        lon = sa.or_(
            Station.longitude_e6 >= math.floor((west + 360) * 1e6),
            Station.longitude_e6 <= math.ceil(east * 1e6),
        )
    elif east > 180:
        lon = sa.or_(
            Station.longitude_e6 >= math.floor(west * 1e6),
            Station.longitude_e6 <= math.ceil((east - 360) * 1e6),
        )
    else:
        lon = sa.and_(
            Station.longitude_e6 >= math.floor(west * 1e6),
            Station.longitude_e6 <= math.ceil(east * 1e6),
        )
    return sa.and_(*clauses, lon)


def _available_connector() -> sa.Exists:
    """A connector of the station that reports Available on a charge point that is online."""
    return (
        sa.select(Connector.station_id)
        .join(
            ConnectorStatus,
            sa.and_(
                ConnectorStatus.charge_point_id == Connector.charge_point_id,
                ConnectorStatus.ocpp_evse_id == Connector.ocpp_evse_id,
                ConnectorStatus.ocpp_connector_id == Connector.ocpp_connector_id,
            ),
        )
        .join(ChargePoint, ChargePoint.charge_point_id == Connector.charge_point_id)
        .where(
            Connector.station_id == Station.station_id,
            ConnectorStatus.status == "Available",
            ChargePoint.online.is_(True),
            sa.or_(ChargePoint.status.is_(None), ChargePoint.status.not_in(sorted(UNUSABLE))),
        )
        .exists()
    )


def search(
    session: Session, filters: Filters, *, limit: int, offset: int, sort: str
) -> tuple[int, list[tuple[Station, float | None]]]:
    """Matching stations (total, one page) with their distance in km when searching near."""
    query = sa.select(Station)
    if not filters.include_retired:
        query = query.where(Station.active.is_(True))
    if filters.near is not None:
        query = query.where(_bounding_box(filters.near))
    if filters.min_power_w is not None:
        query = query.where(Station.max_power_w >= filters.min_power_w)
    if filters.cpo_address is not None:
        query = query.where(sa.func.lower(Station.cpo_address) == filters.cpo_address.lower())
    if filters.connector_type is not None:
        query = query.where(
            sa.select(Connector.station_id)
            .where(
                Connector.station_id == Station.station_id,
                Connector.standard == filters.connector_type,
            )
            .exists()
        )
    if filters.available_now:
        query = query.where(_available_connector())
    near = filters.near
    if near is None:
        total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(query.order_by(Station.station_id).limit(limit).offset(offset)).all()
        return int(total), [(row, None) for row in rows]
    matches: list[tuple[Station, float]] = []
    for row in session.scalars(query):
        km = haversine_km(
            near.latitude, near.longitude, row.latitude_e6 / 1e6, row.longitude_e6 / 1e6
        )
        if km <= near.radius_km:
            matches.append((row, km))
    if sort == "distance":
        matches.sort(key=lambda item: (item[1], item[0].station_id))
    else:
        matches.sort(key=lambda item: item[0].station_id)
    page: list[tuple[Station, float | None]] = list(matches[offset : offset + limit])
    return len(matches), page


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.isoformat()


def summary(station: Station, distance_km: float | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "station_id": station.station_id,
        "cpo_address": station.cpo_address,
        "active": station.active,
        "latitude": station.latitude_e6 / 1e6,
        "longitude": station.longitude_e6 / 1e6,
        "latitude_e6": station.latitude_e6,
        "longitude_e6": station.longitude_e6,
        "connector_count": station.connector_count,
        "max_power_w": station.max_power_w,
        "tariff_id": station.tariff_id,
        "tariff_hash": station.tariff_hash,
    }
    if distance_km is not None:
        result["distance_km"] = round(distance_km, 3)
    return result


def detail(session: Session, station: Station) -> dict[str, Any]:
    """One station: chain record, location with live connector status, tariff, occupancy."""
    result = summary(station)
    result.update(
        meter_key_hash=station.meter_key_hash,
        station_index=station.station_index,
        registered_block=station.registered_block,
        updated_block=station.updated_block,
        tx_hash=station.tx_hash,
        operators=_operators(session, station.station_id),
        open_sessions=session.scalar(_OPEN_SESSIONS, {"station_id": station.station_id}) or 0,
    )
    result["tariff"] = documents.get(session, station.tariff_hash)
    location = session.get(Location, station.station_id)
    result["location"] = _location(session, location, station) if location else None
    return result


def _operators(session: Session, station_id: str) -> list[str]:
    latest: dict[str, bool] = {}
    for change in session.scalars(_OPERATOR_CHANGES, {"station_id": station_id}):
        latest[change.operator] = change.allowed
    return sorted(operator for operator, allowed in latest.items() if allowed)


def _location(session: Session, location: Location, station: Station) -> dict[str, Any]:
    connectors = session.scalars(_CONNECTORS, {"station_id": station.station_id}).all()
    points = {
        p.charge_point_id: p
        for p in session.scalars(
            _CHARGE_POINTS, {"ids": sorted({c.charge_point_id for c in connectors})}
        )
    }
    statuses = {
        (s.charge_point_id, s.ocpp_evse_id, s.ocpp_connector_id): s
        for s in session.scalars(_STATUSES, {"ids": sorted(points)})
    }
    evses: dict[str, dict[str, Any]] = {}
    for connector in connectors:
        point = points.get(connector.charge_point_id)
        status = statuses.get(
            (connector.charge_point_id, connector.ocpp_evse_id, connector.ocpp_connector_id)
        )
        online = point is not None and point.online
        usable = online and point is not None and point.status not in UNUSABLE
        evse = evses.setdefault(
            connector.evse_uid,
            {"uid": connector.evse_uid, "evse_id": connector.evse_id, "connectors": []},
        )
        evse["connectors"].append(
            {
                "id": connector.connector_id,
                "standard": connector.standard,
                "power_type": connector.power_type,
                "max_electric_power_w": connector.max_electric_power_w,
                "charge_point_id": connector.charge_point_id,
                "status": status.status if status is not None else None,
                "error_code": status.error_code if status is not None else None,
                "status_reported_at": _iso(status.reported_at) if status is not None else None,
                "available": bool(usable and status is not None and status.status == "Available"),
            }
        )
    charge_points = [
        {
            "charge_point_id": cp_id,
            "online": bool(points[cp_id].online) if cp_id in points else False,
            "status": points[cp_id].status if cp_id in points else None,
            "last_report_at": _iso(points[cp_id].last_report_at) if cp_id in points else None,
            "offline_reason": points[cp_id].offline_reason if cp_id in points else None,
        }
        for cp_id in sorted({c.charge_point_id for c in connectors})
    ]
    matches_chain = (location.latitude_e6, location.longitude_e6) == (
        station.latitude_e6,
        station.longitude_e6,
    ) and len(connectors) == station.connector_count
    return {
        "name": location.name,
        "document_hash": location.document_hash,
        "matches_chain": matches_chain,
        "document": documents.get(session, location.document_hash),
        "evses": list(evses.values()),
        "charge_points": charge_points,
    }
