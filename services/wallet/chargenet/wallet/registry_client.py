"""The registry's REST API as the wallet needs it: one station, its connector, tariff and status.

``RegistryClient`` takes any ``httpx.Client`` (tests hand it the real registry app through
Starlette's ``TestClient``, which is one), so the wallet never reads the registry's tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from chargenet.core.errors import Conflict, NotFound, Unprocessable
from chargenet.core.web.station_paths import path_segment

#: Connector statuses (OCPP 1.6 and 2.0.1) in which a new session cannot start, and why.
_REFUSED_STATUS = {
    "Unavailable": "unavailable",
    "Faulted": "faulted",
    "Charging": "occupied",
    "Occupied": "occupied",
    "SuspendedEV": "occupied",
    "SuspendedEVSE": "occupied",
    "Reserved": "reserved",
}


class RegistryUnavailable(Exception):
    """The registry did not answer, or answered something the wallet cannot use."""


@dataclass(frozen=True)
class Connector:
    evse_uid: str
    connector_id: str  # the OCPI id within the EVSE
    evse_id: str | None
    charge_point_id: str
    ocpp_evse_id: int | None  # OCPP 2.0.1 EVSE id; None for OCPP 1.6
    ocpp_connector_id: int
    max_power_w: int
    status: str | None
    online: bool
    offline_reason: str | None
    cpo_id: str | None  # as the gateway reported it, when the registry says


@dataclass(frozen=True)
class Station:
    station_id: str  # the registry's text id
    chain_id_hex: str  # 0x-hex bytes32, the contract's id
    cpo_address: str
    active: bool
    tariff: dict[str, Any] | None
    time_zone: str
    connectors: tuple[Connector, ...]

    def connector(self, connector_id: str, evse_uid: str | None) -> Connector:
        matches = [
            c
            for c in self.connectors
            if c.connector_id == connector_id and (evse_uid is None or c.evse_uid == evse_uid)
        ]
        if not matches:
            where = f"EVSE {evse_uid}" if evse_uid else f"station {self.station_id}"
            raise NotFound(f"connector_id: no connector {connector_id!r} at {where}")
        if len(matches) > 1:
            raise Unprocessable(
                f"evse_uid: connector {connector_id!r} exists at several EVSEs "
                f"({', '.join(sorted(c.evse_uid for c in matches))}); name one"
            )
        return matches[0]

    def check_startable(self, connector: Connector) -> None:
        """409 with the reason when no session can start here now."""
        if not self.active:
            raise Conflict(f"station {self.station_id} is retired")
        if self.tariff is None:
            raise Conflict(f"station {self.station_id} has no tariff document registered")
        if not connector.online:
            why = f" ({connector.offline_reason})" if connector.offline_reason else ""
            raise Conflict(f"charge point {connector.charge_point_id} is offline{why}")
        refused = _REFUSED_STATUS.get(connector.status or "")
        if refused is not None:
            raise Conflict(
                f"connector {connector.evse_uid}/{connector.connector_id} is {refused} "
                f"(status {connector.status})"
            )


_HEX_ID = re.compile(r"0x[0-9a-fA-F]{64}")


def chain_station_id(station_id: str) -> str:
    """The contract's bytes32 id of a registry station id (ASCII left-aligned, or 0x-hex)."""
    # Only ids the registry has (else it refused them, 422, and the wallet answered 503).
    if _HEX_ID.fullmatch(station_id):
        return station_id.lower()
    raw = station_id.encode("ascii", errors="replace")
    if (
        not station_id.isascii()
        or not raw
        or len(raw) > 32
        or not all(0x21 <= b <= 0x7E for b in raw)
    ):
        raise Unprocessable("station_id: 1-32 printable ASCII characters without spaces")
    return "0x" + raw.ljust(32, b"\0").hex()


def station_path(station_id: str) -> str:
    """The registry's detail route of a station. A station id is any printable ASCII: unquoted,
    '#', '?', '%' or '/' in it would name another station's route (``FR#1`` reads ``FR``)."""
    return f"/v1/stations/{path_segment(station_id)}"


class RegistryClient:
    def __init__(self, client: httpx.Client) -> None:
        self._http = client

    @classmethod
    def connect(cls, base_url: str, timeout: float = 5.0) -> RegistryClient:
        return cls(httpx.Client(base_url=base_url, timeout=timeout))

    def close(self) -> None:
        self._http.close()

    def check(self) -> None:
        """Readiness: the registry answers its health route."""
        self._http.get("/healthz").raise_for_status()

    def station(self, station_id: str) -> Station:
        chain_id = chain_station_id(station_id)
        try:
            response = self._http.get(station_path(station_id))
        except httpx.HTTPError as error:
            raise RegistryUnavailable(f"the registry did not answer: {error}") from None
        if response.status_code == 404:
            raise NotFound(f"station_id: no station {station_id}")
        if response.status_code != 200:
            raise RegistryUnavailable(f"the registry answered {response.status_code}")
        try:
            return _station(response.json(), chain_id)
        except (KeyError, TypeError, ValueError) as error:
            raise RegistryUnavailable(f"unexpected station document: {error!r}") from None


def _station(body: dict[str, Any], chain_id: str) -> Station:
    location = body.get("location") or {}
    document = location.get("document") or {}
    points = {p["charge_point_id"]: p for p in location.get("charge_points", [])}
    # OCPP numbering lives in the location document the CPO registered.
    ocpp: dict[tuple[str, str], tuple[int | None, int]] = {}
    for evse in document.get("evses", []):
        for connector in evse.get("connectors", []):
            number = connector.get("ocpp_connector_id")
            if number is None:
                number = int(connector["id"]) if str(connector["id"]).isdigit() else 0
            ocpp[(evse["uid"], connector["id"])] = (evse.get("ocpp_evse_id"), int(number))
    connectors = []
    for evse in location.get("evses", []):
        for connector in evse["connectors"]:
            point = points.get(connector["charge_point_id"], {})
            evse_number, number = ocpp.get((evse["uid"], connector["id"]), (None, 0))
            connectors.append(
                Connector(
                    evse_uid=evse["uid"],
                    connector_id=str(connector["id"]),
                    evse_id=evse.get("evse_id"),
                    charge_point_id=connector["charge_point_id"],
                    ocpp_evse_id=evse_number,
                    ocpp_connector_id=number,
                    max_power_w=int(connector.get("max_electric_power_w") or 0),
                    status=connector.get("status"),
                    online=bool(point.get("online", False)),
                    offline_reason=point.get("offline_reason"),
                    cpo_id=point.get("cpo_id"),
                )
            )
    return Station(
        station_id=str(body["station_id"]),
        chain_id_hex=chain_id,
        cpo_address=str(body["cpo_address"]),
        active=bool(body["active"]),
        tariff=body.get("tariff"),
        time_zone=str(document.get("time_zone") or "UTC"),
        connectors=tuple(connectors),
    )
