"""Writing decoded logs into the registry's tables, and undoing them after a reorg.

This is the hot path of a catch-up: per station log, one version row (flagged ``latest``; the
station's previous latest row, if the index holds one, loses the flag in one UPDATE per range)
and one outbox event. Rows are flat lists of values in column order, written by multi-row
INSERTs on the session's own DBAPI connection, and the outbox payloads are rendered from a
template: SQLAlchemy's per-row parameter handling, a dataclass per state and ``json.dumps`` per
event each cost more than SQLite took to store the row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _json
from typing import Any, NamedTuple

import sqlalchemy as sa
from eth_utils.crypto import keccak
from sqlalchemy.orm import Session

from chargenet.core.db import OutboxMessage
from chargenet.core.envelope import SPEC_VERSION, EventData, make_envelope
from chargenet.core.events import StationRegistered, StationRetired, StationUpdated
from chargenet.registry.chain import FIELD_NAMES, ChainEvent, Kind
from chargenet.registry.models import (
    AppliedBlock,
    EscrowSession,
    OperatorChange,
    Station,
    StationVersion,
)

log = logging.getLogger(__name__)

#: A station's chain state: the values of these columns, in this order.
STATION_COLUMNS = ("cpo_address", "station_index", "active", *FIELD_NAMES)
State = tuple[Any, ...]
VERSION_NAMES = (
    "block_number",
    "log_index",
    "block_hash",
    "tx_hash",
    "station_id",
    "kind",
    "changed_by",
    *STATION_COLUMNS,
    "registered_block",
    "latest",
)
_LATEST_AT = len(VERSION_NAMES) - 1  # where a row's latest flag is in its flat values
STATION_NAMES = ("station_id", *STATION_COLUMNS, "registered_block", "updated_block", "tx_hash")
OUTBOX_NAMES = ("event_id", "topic", "key", "payload", "created_at")
_CHUNK = 500  # parameters per IN (...) list: well under SQLite's and PostgreSQL's limits
# Rows per INSERT statement, largest first: few statements per range (a remainder takes at most
# one of each smaller size), and few distinct ones, each prepared once per connection. 256 rows
# of 17 columns stay under both databases' limit on parameters per statement.
_ROWS_PER_STATEMENT = (256, 128, 64, 32, 16, 8, 4, 2, 1)
_KIND_TEXT = {kind: kind.value for kind in Kind}  # plain str: drivers adapt enums by name


class Current(NamedTuple):
    """A station as its latest version left it."""

    state: State
    registered_block: int
    updated_block: int
    tx_hash: str


def event_id(event: ChainEvent) -> str:
    """The id of the station event a log causes: the same whenever that log is applied (the
    outbox refuses it twice), another one for the same log index in another fork's block.
    192 bits of the block hash plus the log index fit the outbox's 64 characters."""
    return f"{event.block_hash[2:50]}-{event.log_index:x}"


# -- applying a range ----------------------------------------------------------------------------


def apply_stations(session: Session, events: Sequence[ChainEvent], source: str) -> None:
    if not events:
        return
    # A registration is always of a station the index does not hold (the contract refuses an
    # id twice, a rollback deletes the stations it un-registers), so only the others are read.
    loaded = load_stations(session, {e.key for e in events if e.kind is not Kind.REGISTERED})
    held = list(loaded)
    # Station id -> (state, registered block) as the events so far left it.
    current = {key: (station.state, station.registered_block) for key, station in loaded.items()}
    now = datetime.now(UTC)
    render = _Payloads(source, now)
    created_at = bind_value(session, OutboxMessage.__table__.c.created_at, now)
    # Flat lists of values, row after row, as the INSERTs take them.
    versions: list[Any] = []
    outbox: list[Any] = []
    latest_at: dict[str, int] = {}  # station id -> where its newest row's flag is in versions
    topic = StationRegistered.topic
    registered_kind = Kind.REGISTERED
    for event in events:
        kind = event.kind
        key = event.key
        state: State
        if kind is registered_kind:
            assert event.fields is not None
            state = (event.account, event.station_index, True, *event.fields)
            registered = event.block_number
        else:
            known = current.get(key)
            if known is None:
                # The contract emits updates and retirements only for registered stations, so
                # this is a start block set after the registration: nothing to change.
                log.warning("%s for station %s, unknown to the index", kind, key)
                continue
            old, registered = known
            if kind is Kind.UPDATED:
                assert event.fields is not None
                state = (old[0], old[1], old[2], *event.fields)
            else:
                state = (old[0], old[1], False, *old[3:])
        current[key] = (state, registered)
        previous = latest_at.get(key)
        if previous is not None:
            versions[previous] = False  # superseded within this range
        latest_at[key] = len(versions) + _LATEST_AT
        versions += (
            event.block_number,
            event.log_index,
            event.block_hash,
            event.tx_hash,
            key,
            _KIND_TEXT[kind],
            event.account,
            *state,
            registered,
            True,
        )
        eid = event_id(event)
        outbox += (eid, topic, key, render(eid, event, state), created_at)
    # Stations the index held lose their flag before their new versions take it.
    for chunk in _chunks(sorted(key for key in held if key in latest_at)):
        session.execute(
            sa.update(StationVersion)
            .where(StationVersion.latest.is_(True), StationVersion.station_id.in_(chunk))
            .values(latest=False)
        )
    insert(session, StationVersion, VERSION_NAMES, versions)
    insert(session, OutboxMessage, OUTBOX_NAMES, outbox)


def apply_operators(session: Session, events: Sequence[ChainEvent]) -> None:
    insert(
        session,
        OperatorChange,
        ("block_number", "log_index", "station_id", "operator", "allowed"),
        [
            value
            for e in events
            for value in (e.block_number, e.log_index, e.key, e.account, e.allowed)
        ],
    )


def apply_sessions(session: Session, events: Sequence[ChainEvent]) -> None:
    opened: dict[str, list[Any]] = {}
    closed: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.kind is Kind.SESSION_OPENED:
            opened[event.key] = [event.key, event.station_id, event.block_number, None, None]
        elif event.key in opened:
            opened[event.key][3:] = [event.block_number, _KIND_TEXT[event.kind]]
        else:
            closed[event.key] = {
                "session_id": event.key,
                "closed_block": event.block_number,
                "closed_as": _KIND_TEXT[event.kind],
            }
    insert(
        session,
        EscrowSession,
        ("session_id", "station_id", "opened_block", "closed_block", "closed_as"),
        [value for row in opened.values() for value in row],
    )
    if closed:
        known = set(
            session.scalars(
                sa.select(EscrowSession.session_id).where(
                    EscrowSession.session_id.in_(list(closed))
                )
            )
        )
        rows = [closed[k] for k in sorted(known)]
        if rows:
            session.execute(sa.update(EscrowSession), rows)


def record_blocks(session: Session, blocks: dict[int, str]) -> None:
    flat = [value for item in sorted(blocks.items()) for value in item]
    insert(session, AppliedBlock, ("number", "hash"), flat)


# -- undoing blocks ------------------------------------------------------------------------------


def undo_above(session: Session, number: int, *, reorg_id: str, source: str) -> None:
    """Delete everything the blocks above ``number`` applied; restore the stations they changed
    from their remaining versions, and tell consumers (one outbox event per station)."""
    affected = set(
        session.scalars(
            sa.select(StationVersion.station_id)
            .where(StationVersion.block_number > number)
            .distinct()
        )
    )
    before = load_stations(session, affected)
    session.execute(sa.delete(StationVersion).where(StationVersion.block_number > number))
    session.execute(sa.delete(OperatorChange).where(OperatorChange.block_number > number))
    session.execute(sa.delete(EscrowSession).where(EscrowSession.opened_block > number))
    session.execute(
        sa.update(EscrowSession)
        .where(EscrowSession.closed_block > number)
        .values(closed_block=None, closed_as=None)
    )
    session.execute(sa.delete(AppliedBlock).where(AppliedBlock.number > number))
    restored = _stations_from_versions(session, affected)
    for _, block, log_index in sorted(restored.values(), key=lambda found: found[1:]):
        # Its newest version was rolled back (that is why it is affected): the newest left
        # is what the chain has now.
        session.execute(
            sa.update(StationVersion)
            .where(StationVersion.block_number == block, StationVersion.log_index == log_index)
            .values(latest=True)
        )
    now = datetime.now(UTC)
    created_at = bind_value(session, OutboxMessage.__table__.c.created_at, now)
    outbox: list[Any] = []
    for station_id in sorted(affected):
        reorg_event_id = f"reorg-{_digest(reorg_id + station_id)}"
        found = restored.get(station_id)
        if found is None:
            # Its registration was rolled back: for consumers it no longer takes sessions.
            gone = before.get(station_id)
            data: EventData = StationRetired(
                station_id=station_id,
                cpo_address=gone.state[0] if gone is not None else "",
                block_number=number,
                tx_hash="",
            )
        else:
            current = found[0]
            active = current.state[2]
            data = _station_event(Kind.UPDATED if active else Kind.RETIRED, station_id, current)
        envelope = make_envelope(data, subject=station_id, source=source, event_id=reorg_event_id)
        outbox += (envelope.id, data.topic, station_id, envelope.to_bytes(), created_at)
    insert(session, OutboxMessage, OUTBOX_NAMES, outbox)


def _digest(text: str) -> str:
    return keccak(text=text).hex()[:48]


def _station_event(kind: Kind, station_id: str, current: Current) -> EventData:
    state = current.state
    common: dict[str, Any] = {
        "station_id": station_id,
        "cpo_address": state[0],
        "block_number": current.updated_block,
        "tx_hash": current.tx_hash,
    }
    if kind is Kind.RETIRED:
        return StationRetired.model_validate(common)
    fields = dict(zip(FIELD_NAMES, state[3:], strict=True))
    fields["latitude_micro"] = fields.pop("latitude_e6")
    fields["longitude_micro"] = fields.pop("longitude_e6")
    return StationUpdated.model_validate({**common, **fields})


# -- reading stations ----------------------------------------------------------------------------


def _chunks(items: Iterable[str]) -> Iterable[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == _CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def load_stations(session: Session, station_ids: set[str]) -> dict[str, Current]:
    stations: dict[str, Current] = {}
    columns = [getattr(Station, name) for name in STATION_NAMES]
    for chunk in _chunks(sorted(station_ids)):
        query = sa.select(*columns).where(Station.station_id.in_(chunk))
        for row in session.execute(query):
            stations[row[0]] = Current(tuple(row[1:-3]), row[-3], row[-2], row[-1])
    return stations


def _stations_from_versions(
    session: Session, station_ids: set[str]
) -> dict[str, tuple[Current, int, int]]:
    """Each station's newest remaining version (after a rollback deleted the newer ones), with
    its block number and log index."""
    stations: dict[str, tuple[Current, int, int]] = {}
    columns = [getattr(StationVersion, name) for name in VERSION_NAMES]
    state = slice(len(VERSION_NAMES) - len(STATION_COLUMNS) - 2, -2)
    for chunk in _chunks(sorted(station_ids)):
        query = (
            sa.select(*columns)
            .where(StationVersion.station_id.in_(chunk))
            .order_by(StationVersion.block_number, StationVersion.log_index)
        )
        for row in session.execute(query):
            current = Current(tuple(row[state]), row[-2], row[0], row[3])
            stations[row[4]] = (current, row[0], row[1])
    return stations


# -- outbox payloads -----------------------------------------------------------------------------


class _Payloads:
    """Station events' envelopes (``chargenet.core.envelope.Envelope`` JSON), rendered directly.

    ``make_envelope`` validates the payload and then the envelope (~80 us an event), the largest
    single cost of a catch-up over many thousands of logs. Every value here is an int, a hex
    string, a checksummed address or an id that goes through the JSON string encoder; the tests
    parse every payload back with ``Envelope`` and the event's schema, and compare one of each
    kind with what ``make_envelope`` makes.
    """

    def __init__(self, source: str, now: datetime) -> None:
        self._tail = (
            f',"source":{_json(source)},"time":"{now.isoformat()}",'
            f'"specversion":"{SPEC_VERSION}","datacontenttype":"application/json","data":{{'
        )
        self._types = {
            Kind.REGISTERED: StationRegistered.event_type,
            Kind.UPDATED: StationUpdated.event_type,
            Kind.RETIRED: StationRetired.event_type,
        }

    def __call__(self, eid: str, event: ChainEvent, state: State) -> bytes:
        subject = _json(event.key)
        head = (
            f'{{"id":"{eid}","type":"{self._types[event.kind]}","subject":{subject}{self._tail}'
            f'"station_id":{subject},"cpo_address":"{state[0]}",'
            f'"block_number":{event.block_number},"tx_hash":"{event.tx_hash}"'
        )
        if event.kind is Kind.RETIRED:
            return f"{head}}}}}".encode()
        return (
            f'{head},"latitude_micro":{state[3]},"longitude_micro":{state[4]},'
            f'"connector_count":{state[5]},"max_power_w":{state[6]},'
            f'"tariff_id":{_json(state[7])},"tariff_hash":"{state[8]}",'
            f'"meter_key_hash":"{state[9]}"}}}}'
        ).encode()


# -- inserting -----------------------------------------------------------------------------------


def bind_value(session: Session, column: sa.ColumnElement[Any], value: Any) -> Any:
    """``value`` as the column's type hands it to this database's driver (e.g. SQLite's
    text for a datetime): computed once per range rather than once per row."""
    dialect = session.connection().dialect
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return value if process is None else process(value)


def insert(session: Session, model: Any, names: Sequence[str], values: list[Any]) -> None:
    """Insert rows given as one flat list of values (row after row, in ``names`` order, as the
    driver takes them: see :func:`bind_value`) with multi-row INSERTs on the session's DBAPI
    connection.

    One statement per up to 256 rows rather than one ``executemany`` step per row: besides the
    driver's per-row work, each step releases and retakes the GIL, and while the read-ahead
    thread parses the node's JSON every retake waits for it.
    """
    if not values:
        return
    width = len(names)
    rows = len(values) // width
    if rows * width != len(values):
        raise ValueError(f"{len(values)} values do not make rows of {width} columns")
    connection = session.connection()
    style = connection.dialect.paramstyle
    cursor = connection.connection.cursor()
    try:
        at = 0
        for size in _ROWS_PER_STATEMENT:
            while rows - at >= size:
                statement = _statement(model.__table__.name, tuple(names), size, style)
                cursor.execute(statement, values[at * width : (at + size) * width])
                at += size
    finally:
        cursor.close()


@lru_cache(maxsize=64)
def _statement(table: str, names: tuple[str, ...], rows: int, paramstyle: str) -> str:
    placeholder = "?" if paramstyle == "qmark" else "%s"
    values = "(" + ", ".join(placeholder for _ in names) + ")"
    # Names come from the table definitions, never from input; values travel as parameters.
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES " + ", ".join(  # noqa: S608
        [values] * rows
    )
