"""REST: station search and detail for anyone; station changes for authenticated CPOs."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from chargenet.core.auth import CurrentPrincipal, Principal, Role
from chargenet.core.db import Database
from chargenet.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from chargenet.core.web.station_paths import ONE_SEGMENT, StationId
from chargenet.registry.cpo import (
    ChainWriter,
    attach_location,
    attach_tariff,
    call_key,
    check_hash,
    check_station_id,
    new_change,
    owned_station,
    store_document,
    store_location,
)
from chargenet.registry.documents import (
    UINT32_MAX,
    ConnectorType,
    check_location,
    check_tariff,
    parse_json,
)
from chargenet.registry.models import Document, Station
from chargenet.registry.query import Filters, Near, detail, search, summary

router = APIRouter(prefix="/v1", tags=["stations"])
#: Where a path segment is a station id (see chargenet.core.web.station_paths).
STATION_PREFIXES = ("/v1/stations/", "/v1/cpo/stations/")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
#: Operator keys a registration may name: StationRegistry.register stores each in its own slot
#: (about 25,000 gas apiece), so thousands would not fit a block and the transaction would fail
#: after it was sent. A station has a gateway key or a few (more can be allowed on chain, one
#: StationRegistry.setOperator at a time).
MAX_OPERATORS = 64
MAX_PAGE = 100
MAX_OFFSET = 10_000
MAX_RADIUS_KM = 500.0


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _writer(request: Request) -> ChainWriter:
    writer: ChainWriter | None = request.app.state.writer
    if writer is None:
        raise Conflict("this registry has no signer configured: station changes are off")
    return writer


@router.get("/stations")
def list_stations(
    request: Request,
    lat: Annotated[float | None, Query(ge=-90, le=90, description="degrees")] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180, description="degrees")] = None,
    radius_km: Annotated[float, Query(gt=0, le=MAX_RADIUS_KM)] = 10.0,
    connector_type: ConnectorType | None = None,
    min_power_w: Annotated[int | None, Query(ge=0, le=UINT32_MAX)] = None,
    available_now: bool = False,
    cpo: Annotated[str | None, Query(description="the CPO's address")] = None,
    include_retired: bool = False,
    sort: Literal["distance", "id"] | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    if (lat is None) != (lon is None):
        raise Unprocessable("lat and lon go together")
    if cpo is not None and not _ADDRESS.fullmatch(cpo):
        raise Unprocessable(f"cpo {cpo!r} is not a 0x-prefixed 20-byte address")
    near = Near(lat, lon, radius_km) if lat is not None and lon is not None else None
    if sort == "distance" and near is None:
        raise Unprocessable("sort=distance needs lat and lon")
    order = sort or ("distance" if near is not None else "id")
    filters = Filters(
        near=near,
        connector_type=connector_type.value if connector_type is not None else None,
        min_power_w=min_power_w,
        available_now=available_now,
        cpo_address=cpo,
        include_retired=include_retired,
    )
    with _db(request).session() as session:
        total, page = search(session, filters, limit=limit, offset=offset, sort=order)
        return {
            "total": total,
            "limit": limit,
            "offset": offset,
            "sort": order,
            "stations": [summary(station, km) for station, km in page],
        }


@router.get("/stations/{station_id}")
def get_station(request: Request, station_id: StationId) -> dict[str, Any]:
    check_station_id(station_id)  # e.g. a NUL, which PostgreSQL cannot even compare
    with _db(request).session() as session:
        station = session.get(Station, station_id)
        if station is None:
            raise NotFound(f"no station {station_id}")
        return detail(session, station)


@router.get("/documents/{document_hash}")
def get_document(request: Request, document_hash: str) -> Response:
    digest = check_hash(document_hash, "document hash")
    with _db(request).session() as session:
        document = session.get(Document, digest)
        if document is None:
            raise NotFound(f"no document {document_hash}")
        body = document.body
    # The canonical bytes themselves, so a client can hash exactly what it received.
    return Response(content=body.encode(), media_type="application/json")


# -- CPO -----------------------------------------------------------------------------------------


def _cpo(who: Principal) -> str:
    if who.role is not Role.CPO:
        raise Forbidden("only a CPO token may change stations")
    return who.subject


def _documents(body: dict[str, Any]) -> tuple[Any, Any, str]:
    location, tariff = body.get("location"), body.get("tariff")
    if not isinstance(location, dict):
        raise Unprocessable("location: an OCPI Location object is required")
    if not isinstance(tariff, dict):
        raise Unprocessable("tariff: an OCPI Tariff object is required")
    meter = body.get("meter_key_hash")
    if not isinstance(meter, str):
        raise Unprocessable("meter_key_hash: the keccak-256 of the meter's public key (0x...)")
    return check_location(location), check_tariff(tariff), meter


@router.post("/cpo/stations", status_code=202)
async def register_station(request: Request, who: CurrentPrincipal) -> dict[str, Any]:
    cpo_id = _cpo(who)
    body = parse_json(await request.body(), "request")
    station_id = body.get("station_id")
    if not isinstance(station_id, str):
        raise Unprocessable("station_id: required, 1-32 printable ASCII characters")
    raw_id = check_station_id(station_id)
    location, tariff, meter = _documents(body)
    operators = body.get("operators", [])
    if not isinstance(operators, list) or not all(
        isinstance(o, str) and _ADDRESS.fullmatch(o) for o in operators
    ):
        raise Unprocessable("operators: a list of 0x-prefixed 20-byte addresses")
    if len(operators) > MAX_OPERATORS:
        raise Unprocessable(f"operators: at most {MAX_OPERATORS} ({len(operators)} given)")
    # An address in another letter case is the same key: the chain would set it twice, paid.
    seen: set[str] = set()
    for operator in operators:
        if operator.lower() in seen:
            raise Unprocessable(f"operators: {operator} is named twice")
        seen.add(operator.lower())
    change = new_change(station_id, location, tariff, meter)
    writer, db = _writer(request), _db(request)
    with db.session() as session:
        if session.get(Station, station_id) is not None:
            raise Conflict(f"station {station_id} is already registered")
    args = ["0x" + raw_id.hex(), change.info(), operators]
    key = call_key("register", station_id, args)
    tx = writer.send(key, cpo_id, "register", args)
    with db.session() as session:
        store_location(session, station_id, location)
        store_document(session, "tariff", tariff.document, tariff.hash)
    return _accepted(station_id, tx.tx_hash, key, change.info())


@router.put("/cpo/stations/{station_id}", status_code=202)
async def update_station(
    request: Request, who: CurrentPrincipal, station_id: StationId
) -> dict[str, Any]:
    cpo_id = _cpo(who)
    raw_id = check_station_id(station_id)
    body = parse_json(await request.body(), "request")
    location, tariff, meter = _documents(body)
    change = new_change(station_id, location, tariff, meter)
    writer, db = _writer(request), _db(request)
    address = writer.address_of(cpo_id)
    with db.session() as session:
        station = owned_station(session, station_id, address)
        version = station.updated_block
    key = f"registry:update:{station_id}:{version}:{change.fingerprint()}"
    tx = writer.send(key, cpo_id, "update", ["0x" + raw_id.hex(), change.info()])
    with db.session() as session:
        store_location(session, station_id, location)
        store_document(session, "tariff", tariff.document, tariff.hash)
    return _accepted(station_id, tx.tx_hash, key, change.info())


@router.delete("/cpo/stations/{station_id}", status_code=202)
def retire_station(
    request: Request, who: CurrentPrincipal, station_id: StationId
) -> dict[str, Any]:
    cpo_id = _cpo(who)
    raw_id = check_station_id(station_id)
    writer, db = _writer(request), _db(request)
    address = writer.address_of(cpo_id)
    with db.session() as session:
        owned_station(session, station_id, address)
    key = f"registry:retire:{station_id}"
    tx = writer.send(key, cpo_id, "retire", ["0x" + raw_id.hex()])
    return _accepted(station_id, tx.tx_hash, key, None)


@router.put("/cpo/stations/{station_id}/location", status_code=204)
async def put_location(request: Request, who: CurrentPrincipal, station_id: StationId) -> None:
    cpo_id = _cpo(who)
    check_station_id(station_id)
    location = check_location(parse_json(await request.body(), "location"))
    address = _writer(request).address_of(cpo_id)
    attach_location(_db(request), station_id, address, location)


@router.put("/cpo/stations/{station_id}/tariff", status_code=204)
async def put_tariff(request: Request, who: CurrentPrincipal, station_id: StationId) -> None:
    cpo_id = _cpo(who)
    check_station_id(station_id)
    tariff = check_tariff(parse_json(await request.body(), "tariff"))
    address = _writer(request).address_of(cpo_id)
    attach_tariff(_db(request), station_id, address, tariff)


# Last, after every station route: a path none of them took, e.g. an id whose '/' was not encoded.
@router.get("/stations/{rest:path}", include_in_schema=False)
@router.api_route("/cpo/stations/{rest:path}", methods=["PUT", "DELETE"], include_in_schema=False)
def unrouted_station(request: Request) -> None:
    raise NotFound(f"no route {request.method} {request.url.path}: {ONE_SEGMENT}")


def _accepted(
    station_id: str, tx_hash: str, key: str, info: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "station_id": station_id,
        "status": "submitted",
        "tx_hash": tx_hash,
        "idempotency_key": key,
        "station_info": info,
        "note": "the station shows in search once the transaction is confirmed and indexed",
    }
