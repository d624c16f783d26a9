"""Registry pieces that need no component: station ids, document checks and hashes, and the
distance search (across the antimeridian too) on SQLite."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from chargenet.core.db import Database, OutboxMessage
from chargenet.core.envelope import Envelope, make_envelope
from chargenet.core.errors import Unprocessable
from chargenet.core.events import StationRegistered, StationRetired, StationUpdated
from chargenet.core.pricing import canonical_hash, tariff_hash
from chargenet.registry.chain import ChainEvent, Kind, station_bytes, station_key
from chargenet.registry.documents import (
    ChainRecord,
    check_location,
    check_tariff,
    micro_degrees,
    parse_json,
    tariff_mismatches,
)
from chargenet.registry.main import migrate
from chargenet.registry.models import Document, StationVersion
from chargenet.registry.query import Filters, Near, ParsedDocuments, haversine_km, search
from chargenet.registry.writes import apply_stations
from tests.registry.harness import TARIFF
from tests.registry.test_api import location


def test_station_ids_round_trip() -> None:
    raw = station_bytes("DE*CNT*E0001")
    assert raw == b"DE*CNT*E0001".ljust(32, b"\0") and station_key(raw) == "DE*CNT*E0001"
    odd = bytes([0xFF] * 32)
    assert station_key(odd) == "0x" + "ff" * 32 and station_bytes(station_key(odd)) == odd
    for bad in ("", "with space", "x" * 33, "é"):
        with pytest.raises((ValueError, UnicodeEncodeError)):
            station_bytes(bad)


def test_tariff_hash_is_the_canonical_hash_of_the_document_as_sent() -> None:
    # 0.350 and 0.35 are the same decimal: the canonical form writes both as 0.35.
    text = '{"a": 0.350, "b": null, "c": "x"}'
    assert "0x" + canonical_hash({"a": Decimal("0.35"), "c": "x"}).hex() == check_tariff_hash(text)
    # What the escrow checks a session's tariff by, from the document as the wallet read it
    # (floats): the same hash.
    assert "0x" + tariff_hash(json.loads(text)).hex() == check_tariff_hash(text)
    tariff = check_tariff(parse_json(_json(TARIFF), "tariff"))
    record = ChainRecord("S", 0, 0, 1, 1, "TARIFF-AC-1", tariff.hash)
    assert tariff_mismatches(tariff, record) == []
    wrong = ChainRecord("S", 0, 0, 1, 1, "TARIFF-AC-1", "0x" + "00" * 32)
    assert "keccak hash" in tariff_mismatches(tariff, wrong)[0]


def check_tariff_hash(text: str) -> str:
    from chargenet.registry.documents import document_hash

    return document_hash(parse_json(text, "doc"))


def _json(value: object) -> str:
    import json

    return json.dumps(value)


def test_location_checks_name_the_field() -> None:
    assert micro_degrees("52.5200085", 90, "lat") == 52_520_008  # half-even to micro-degrees
    with pytest.raises(Unprocessable, match="out of range"):
        micro_degrees("-180.000001", 180, "lon")
    checked = check_location(location())
    assert checked.max_power_w == 150_000 and len(checked.connectors) == 2
    assert checked.connectors[0].max_electric_power_w == 230 * 32 * 3  # AC 3-phase
    no_cp = location()
    del no_cp["charge_point_id"]
    with pytest.raises(Unprocessable, match="charge_point_id"):
        check_location(no_cp)
    with pytest.raises(Unprocessable, match="not JSON"):
        parse_json(b"{", "location")


_LOG_INDEX = itertools.count()


def _station(station_id: str, lat: float, lon: float, power: int = 50_000) -> StationVersion:
    """A station as the index holds it: its latest version (``registry_stations`` shows it)."""
    return StationVersion(
        block_number=1,
        log_index=next(_LOG_INDEX),
        block_hash="0x" + "00" * 32,
        tx_hash="0x" + "00" * 32,
        station_id=station_id,
        kind="registered",
        changed_by="0x" + "ab" * 20,
        cpo_address="0x" + "ab" * 20,
        station_index=1,
        active=True,
        latitude_e6=round(lat * 1e6),
        longitude_e6=round(lon * 1e6),
        connector_count=1,
        max_power_w=power,
        tariff_id="T",
        tariff_hash="0x" + "00" * 32,
        meter_key_hash="0x" + "00" * 32,
        registered_block=1,
        latest=True,
    )


def test_distance_search_sorts_pages_and_wraps_the_antimeridian(tmp_path: object) -> None:
    db = Database(f"sqlite:///{tmp_path}/units.db")
    migrate(db)
    with db.session() as session:
        session.add_all(
            [
                _station("BERLIN-MITTE", 52.5200, 13.4050),
                _station("BERLIN-ZOO", 52.5070, 13.3320, power=300_000),
                _station("POTSDAM", 52.3906, 13.0645),
                _station("MUNICH", 48.1372, 11.5756),
                _station("FIJI-WEST", -17.0, 179.95),
                _station("FIJI-EAST", -17.0, -179.95),
            ]
        )
    with db.session() as session:
        near = Filters(near=Near(52.5200, 13.4050, 30))
        total, page = search(session, near, limit=2, offset=0, sort="distance")
        assert total == 3
        assert [s.station_id for s, _ in page] == ["BERLIN-MITTE", "BERLIN-ZOO"]
        assert page[0][1] == pytest.approx(0, abs=0.001)
        assert page[1][1] == pytest.approx(haversine_km(52.52, 13.405, 52.507, 13.332))
        _, rest = search(session, near, limit=2, offset=2, sort="distance")
        assert [s.station_id for s, _ in rest] == ["POTSDAM"]
        strong = Filters(near=Near(52.52, 13.405, 30), min_power_w=100_000)
        assert [
            s.station_id for s, _ in search(session, strong, limit=10, offset=0, sort="distance")[1]
        ] == ["BERLIN-ZOO"]
        pacific = Filters(near=Near(-17.0, 179.99, 20))
        _, both = search(session, pacific, limit=10, offset=0, sort="distance")
        assert {s.station_id for s, _ in both} == {"FIJI-WEST", "FIJI-EAST"}
        total, _ = search(session, Filters(), limit=1, offset=0, sort="id")
        assert total == 6
    db.dispose()


def test_outbox_payloads_are_the_envelopes_make_envelope_makes(tmp_path: object) -> None:
    """The indexer renders station events' JSON itself (for speed): each must parse to exactly
    the envelope ``make_envelope`` builds, ids needing JSON escapes included."""
    station, tariff, cpo = 'DE*"Q\\E1', 'T"1\\', "0x" + "AbCd" * 10
    hashes = ["0x" + f"{n:02x}" * 32 for n in range(5)]
    fields = (-33_868_820, 151_209_296, 4, 350_000, tariff, hashes[0], hashes[1])
    events = [
        ChainEvent(Kind.REGISTERED, 7, hashes[2], 0, hashes[3], station, cpo, 3, fields),
        ChainEvent(Kind.UPDATED, 7, hashes[2], 1, hashes[4], station, cpo, 0, fields),
        ChainEvent(Kind.RETIRED, 8, hashes[4], 0, hashes[3], station, cpo),
    ]
    db = Database(f"sqlite:///{tmp_path}/outbox.db")
    migrate(db)
    with db.session() as session:
        apply_stations(session, events, "registry-test")
    with db.session() as session:
        rows = session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.seq)).all()
    db.dispose()

    full = {
        "station_id": station,
        "cpo_address": cpo,
        "latitude_micro": fields[0],
        "longitude_micro": fields[1],
        "connector_count": 4,
        "max_power_w": 350_000,
        "tariff_id": tariff,
        "tariff_hash": hashes[0],
        "meter_key_hash": hashes[1],
    }
    expected = [
        StationRegistered(**full, block_number=7, tx_hash=hashes[3]),
        StationUpdated(**full, block_number=7, tx_hash=hashes[4]),
        StationRetired(station_id=station, cpo_address=cpo, block_number=8, tx_hash=hashes[3]),
    ]
    assert len(rows) == len(expected)
    for row, event, data in zip(rows, events, expected, strict=True):
        got = Envelope.from_bytes(row.payload)
        want = make_envelope(data, subject=station, source="registry-test", event_id=row.event_id)
        assert row.event_id == f"{event.block_hash[2:50]}-{event.log_index:x}"
        assert (row.topic, row.key) == (data.topic, station)
        assert got.model_dump(exclude={"time"}) == want.model_dump(exclude={"time"})
        assert got.time.utcoffset() is not None


def test_documents_are_parsed_once_per_hash_and_a_missing_one_is_asked_again(
    tmp_path: object,
) -> None:
    db = Database(f"sqlite:///{tmp_path}/documents.db")
    migrate(db)
    kept = ParsedDocuments(size=2)
    digests = [f"0x{n:064x}" for n in range(3)]
    with db.session() as session:
        assert kept.get(session, digests[0]) is None  # not indexed yet
        for n, digest in enumerate(digests):
            now = datetime.now(UTC)
            session.add(Document(hash=digest, kind="tariff", body=f'{{"n":{n}}}', created_at=now))
    with db.session() as session:
        first = kept.get(session, digests[0])
        assert first == {"n": 0}, "a hash missing before is read once it is indexed"
        assert kept.get(session, digests[0]) is first, "parsed once, then kept"
        kept.get(session, digests[1])
        kept.get(session, digests[2])  # beyond the size: the least recently used goes
        assert kept.get(session, digests[0]) == {"n": 0}
        assert kept.get(session, digests[0]) is not first
