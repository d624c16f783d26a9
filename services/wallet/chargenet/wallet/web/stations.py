"""Station search results as the pages show them: name, place, live availability, headline price."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chargenet.wallet.web.mapview import Point
from chargenet.wallet.web.tariff import TariffView, tariff_view

#: OCPI connector standards drivers look for, with the names they know them by.
CONNECTORS: tuple[tuple[str, str], ...] = (
    ("IEC_62196_T2", "Type 2"),
    ("IEC_62196_T2_COMBO", "CCS (Combo 2)"),
    ("CHADEMO", "CHAdeMO"),
    ("IEC_62196_T1", "Type 1"),
    ("IEC_62196_T1_COMBO", "CCS (Combo 1)"),
    ("DOMESTIC_F", "Schuko"),
    ("TESLA_S", "Tesla"),
)
CONNECTOR_NAMES = dict(CONNECTORS)
POWERS: tuple[tuple[int, str], ...] = (
    (11_000, "11 kW or more"),
    (22_000, "22 kW or more"),
    (50_000, "50 kW or more"),
    (150_000, "150 kW or more"),
)


@dataclass(frozen=True)
class ConnectorView:
    evse_uid: str
    connector_id: str
    evse_id: str | None
    standard: str
    power_kw: str
    status: str  # what a person reads: Available, Charging, Offline, Unknown, ...
    available: bool

    @property
    def value(self) -> str:
        """The form value naming this connector (EVSE uid and connector id)."""
        return f"{self.evse_uid}/{self.connector_id}"


@dataclass(frozen=True)
class StationView:
    station_id: str
    name: str
    address: str
    latitude: float
    longitude: float
    distance_km: float | None
    max_power_kw: str
    active: bool
    connectors: tuple[ConnectorView, ...]
    tariff: TariffView | None

    @property
    def available(self) -> int:
        return sum(1 for c in self.connectors if c.available)

    @property
    def point(self) -> Point:
        return Point(self.station_id, self.latitude, self.longitude, self.name, self.available > 0)


def kw(watts: int | None) -> str:
    if not watts:
        return "?"
    value = watts / 1000
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def station_view(detail: dict[str, Any], distance_km: float | None = None) -> StationView:
    location = detail.get("location") or {}
    document = location.get("document") or {}
    online = {
        p["charge_point_id"]: bool(p.get("online")) for p in location.get("charge_points", [])
    }
    connectors = []
    for evse in location.get("evses", []):
        for connector in evse.get("connectors", []):
            if not online.get(connector.get("charge_point_id", ""), False):
                status = "Offline"
            else:
                status = connector.get("status") or "Unknown"
            connectors.append(
                ConnectorView(
                    evse_uid=str(evse["uid"]),
                    connector_id=str(connector["id"]),
                    evse_id=evse.get("evse_id"),
                    standard=CONNECTOR_NAMES.get(connector.get("standard", ""), "")
                    or str(connector.get("standard", "?")),
                    power_kw=kw(connector.get("max_electric_power_w")),
                    status=status,
                    available=bool(connector.get("available")) and detail.get("active", False),
                )
            )
    place = ", ".join(str(part) for part in (document.get("address"), document.get("city")) if part)
    return StationView(
        station_id=str(detail["station_id"]),
        name=str(location.get("name") or document.get("name") or detail["station_id"]),
        address=place,
        latitude=float(detail["latitude"]),
        longitude=float(detail["longitude"]),
        distance_km=distance_km,
        max_power_kw=kw(detail.get("max_power_w")),
        active=bool(detail.get("active")),
        connectors=tuple(connectors),
        tariff=tariff_view(detail.get("tariff")),
    )
