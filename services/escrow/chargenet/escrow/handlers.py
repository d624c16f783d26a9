"""The escrow's consumer: session events and gateway results, each applied once (core inbox).

A handler only changes the session when the event fits its state; anything else (a meter value
after the settlement, a start for a session already cancelled) is logged and dropped, so
redelivered, duplicated or late events change nothing.

The bus hands over what it fetched together (``handle_batch``): those events are applied in one
transaction, in order, with every session they name locked up front (in id order). If the
batch fails, the bus hands them over one by one (``__call__``), each in its own transaction.

Meter values are most of the events (one every few seconds per charging session), and pricing
reads and prices every sample of the session. So a meter value only records its sample; the
session is priced (the budget check) once after the batch's last meter value of it, and before
any other event of that session, so that event sees what the meter values before it decided
(a budget stop comes before a stop that follows it). The price of all the samples is the same
whether computed after each or after the last, and it is the one compared with the budget;
what changes is only that intermediate prices nobody reads are not computed.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from eth_utils.address import to_checksum_address
from pydantic import ValidationError

from chargenet.core.bus import EventBus
from chargenet.core.chain import parse_session_id
from chargenet.core.db.database import among
from chargenet.core.envelope import Envelope
from chargenet.core.events import (
    CommandResult,
    CommandStatus,
    MeterReading,
    SessionCancelled,
    SessionPriced,
    SessionRequested,
    SessionStarted,
    SessionStopped,
    StopRequested,
    gateway_commands_topic,
)
from chargenet.core.logging import bind
from chargenet.core.pricing import (
    PricingError,
    RunningPrice,
    RunningPrices,
    Tariff,
    tariff_hash,
)
from chargenet.escrow.chain import ChainReader, Station
from chargenet.escrow.core import SOURCE, EscrowCore, Stopped, Tx, Work, utcnow
from chargenet.escrow.metrics import CONSUMER_BATCH, CONSUMER_BATCH_TIME
from chargenet.escrow.models import MeterSampleRow, SessionRow
from chargenet.escrow.operations import open_or_wait
from chargenet.escrow.settlement import (
    STATION_KEY,
    NothingToSettle,
    StoredSample,
    running_price,
    settle_session,
)
from chargenet.escrow.states import State

log = logging.getLogger(__name__)
CONSUMER = "escrow"
_OWN = frozenset({StopRequested.event_type})
#: Built once: the statement is the same for every meter value, only the ids change.
_COUNT_SAMPLES = (
    sa.select(MeterSampleRow.session_id, sa.func.count())
    .where(among(MeterSampleRow.session_id, "ids"))
    .group_by(MeterSampleRow.session_id)
)
#: What pricing and settlement read of stored samples, as plain rows: loading them as ORM
#: objects was a tenth of the escrow's CPU for a stop (a row object per reading).
_SAMPLE_READ = sa.select(
    MeterSampleRow.id,
    MeterSampleRow.session_id,
    MeterSampleRow.measured_at,
    MeterSampleRow.energy_wh,
    MeterSampleRow.power_w,
    MeterSampleRow.signed_data,
)
_SAMPLES_OF = _SAMPLE_READ.where(among(MeterSampleRow.session_id, "ids"))
#: A request's clashes, both in one statement (each column has its unique index).
_CLASHES = sa.select(SessionRow).where(
    sa.or_(
        sa.and_(
            SessionRow.driver_id == sa.bindparam("driver_id"),
            SessionRow.idempotency_key == sa.bindparam("key"),
        ),
        SessionRow.chain_session_id == sa.bindparam("chain_session_id"),
    )
)


class SessionHandlers:
    def __init__(
        self, core: EscrowCore, reader: ChainReader | None, bus: EventBus | None = None
    ) -> None:
        self.core = core
        self.reader = reader
        self.bus = bus
        self._topics: set[str] = set()
        #: Running sessions' prices, so a meter value books one sample, not all of them again.
        self._prices = RunningPrices()
        self._dispatch: dict[str, Callable[[Tx, Envelope], None]] = {
            SessionRequested.event_type: self._requested,
            SessionStarted.event_type: self._started,
            StopRequested.event_type: self._stop_requested,
            SessionStopped.event_type: self._stopped,
            CommandResult.event_type: self._command_result,
        }

    def __call__(self, envelope: Envelope) -> None:
        if self._wanted(envelope):
            stations = self._stations([envelope])
            self.core.apply_once(
                CONSUMER, envelope, lambda tx: self._apply(tx, [envelope], stations=stations)
            )

    def handle_batch(self, envelopes: Sequence[Envelope]) -> None:
        """The events in one transaction (the bus falls back to ``__call__`` if it fails)."""
        wanted = [e for e in envelopes if self._wanted(e)]
        size = self.core.settings.escrow_consumer_batch
        # Chunks in order: if a later one fails, the bus hands every event over again one by
        # one, and the inbox skips what the chunks before it committed.
        for start in range(0, len(wanted), size):
            began = time.monotonic()
            chunk = wanted[start : start + size]
            stations = self._stations(chunk)
            applied = self.core.apply_batch(
                CONSUMER, chunk, functools.partial(self._apply, stations=stations)
            )
            if applied:
                CONSUMER_BATCH.observe(len(applied))
                CONSUMER_BATCH_TIME.observe(time.monotonic() - began)

    @property
    def types(self) -> frozenset[str]:
        """The event types the escrow applies (the bus passes over the rest unparsed)."""
        return frozenset({MeterReading.event_type, *self._dispatch})

    def _wanted(self, envelope: Envelope) -> bool:
        if envelope.type == MeterReading.event_type:
            return True
        if envelope.type not in self._dispatch:
            return False  # other session events
        if envelope.source == SOURCE and envelope.type in _OWN:
            return False  # the escrow's own StopRequested
        # Accepted (most results): nothing to change, not even the inbox.
        return envelope.type != CommandResult.event_type or _needs_action(envelope)

    def _stations(self, envelopes: Sequence[Envelope]) -> dict[bytes, Station | None]:
        """The requested stations' chain facts, in one round trip for the whole batch."""
        ids = {
            key
            for e in envelopes
            if e.type == SessionRequested.event_type
            and isinstance(station := e.data.get("station_id"), str)
            and (key := _bytes32(station)) is not None
        }
        if self.reader is None or not ids:
            return {}
        return self.reader.stations(sorted(ids))

    def _apply(
        self, tx: Tx, envelopes: list[Envelope], *, stations: dict[bytes, Station | None]
    ) -> None:
        tx.stations = stations
        sessions = {sid for e in envelopes if isinstance(sid := e.data.get("session_id"), str)}
        self.core.lock_all(tx, sessions)
        unpriced: set[str] = set()  # sessions with meter values recorded and not yet priced
        for envelope in envelopes:
            with bind(session_id=envelope.subject, event_id=envelope.id):
                session_id = envelope.data.get("session_id")
                if session_id in tx.stopped:
                    # A stopped session is closed before anything else of it is applied.
                    self._close(tx, [tx.stopped.pop(session_id)])
                if envelope.type == MeterReading.event_type:
                    if (recorded := self._meter(tx, envelope)) is not None:
                        unpriced.add(recorded)
                    continue
                if session_id in unpriced:
                    unpriced.discard(session_id)
                    self._price(tx, [session_id])
                self._dispatch[envelope.type](tx, envelope)
        self._price(tx, unpriced)
        self._close(tx, list(tx.stopped.values()))
        tx.stopped.clear()
        self._open_requested(tx)

    def _close(self, tx: Tx, stops: Sequence[Stopped]) -> None:
        """Close stopped sessions, their samples (this transaction's written first) read in one
        statement for all of them."""
        if not stops:
            return
        tx.write_samples()
        samples = stored_samples(tx, [stop.row.session_id for stop in stops])
        for stop in stops:
            with bind(session_id=stop.row.session_id):
                close(
                    self.core,
                    tx,
                    stop.row,
                    end=stop.end,
                    reason=stop.reason,
                    samples=samples[stop.row.session_id],
                )

    def _open_requested(self, tx: Tx) -> None:
        """Stage the open of this transaction's requests in it when no open is on its way.

        The worker's window only gathers requests while an open is on its way; without one, a
        request goes at once anyway. Staging it here, not in a transaction of the worker's
        after this one commits, takes that transaction and a thread's wake-up off every lone
        start. With an open on its way, the worker gathers them as before."""
        waiting = [r for r in tx.requested if r.state == State.REQUESTED.value]
        if not waiting:
            return
        too_many = len(waiting) > self.core.settings.escrow_max_batch
        if too_many or not open_or_wait(self.core, tx, waiting):
            tx.work.add(Work.OPENS)  # the worker batches them, or holds them for the next open

    # -- requested ---------------------------------------------------------------------------
    def _requested(self, tx: Tx, envelope: Envelope) -> None:
        request = envelope.payload(SessionRequested)
        session = tx.session
        if self.core.locked(tx, request.session_id) is not None:
            return
        chain_session_id = request.chain_session_id.lower()
        clashes = session.scalars(
            _CLASHES,
            {
                "driver_id": request.driver_id,
                "key": request.idempotency_key,
                "chain_session_id": chain_session_id,
            },
        ).all()
        duplicate = next(
            (
                r
                for r in clashes
                if r.driver_id == request.driver_id and r.idempotency_key == request.idempotency_key
            ),
            None,
        )
        if duplicate is not None:
            # Requests travel on their sessions' partitions, so of two with one key either may
            # arrive first: the first is the session, the other is answered, not left waiting.
            log.info("request %s repeats %s", request.session_id, duplicate.session_id)
            tx.emit(
                SessionCancelled(
                    session_id=request.session_id,
                    reason=f"repeats session {duplicate.session_id} (same idempotency key)",
                ),
                request.session_id,
            )
            return
        taken = next((r for r in clashes if r.chain_session_id == chain_session_id), None)
        if taken is not None:
            tx.emit(
                SessionCancelled(
                    session_id=request.session_id,
                    reason=f"escrow session id already used by session {taken.session_id}",
                ),
                request.session_id,
            )
            return
        data = envelope.data.copy()
        row = SessionRow(
            session_id=request.session_id,
            chain_session_id=chain_session_id,
            state=State.REQUESTED.value,
            driver_id=request.driver_id,
            driver_address=request.driver_address,
            idempotency_key=request.idempotency_key,
            cpo_id=request.cpo_id,
            station_id=request.station_id.lower(),
            charge_point_id=request.charge_point_id,
            connector_id=request.connector_id,
            evse_id=request.evse_id,
            id_token=request.id_token,
            max_amount=request.max_amount,
            expiry=request.expiry,
            request="{}",
            cost_so_far=0,
            signed_meter_data="[]",
            meter_verified=False,
            attempts=0,
        )
        problem = self._check(tx, request, data)
        row.request = json.dumps(data)
        session.add(row)
        session.flush()
        tx.rows[row.session_id] = row
        if problem is not None:
            tx.move(row, State.REJECTED, problem)
            tx.emit(SessionCancelled(session_id=row.session_id, reason=problem), row.session_id)
        else:
            tx.requested.append(row)
            self._ensure_topic(gateway_commands_topic(row.cpo_id))

    def _check(self, tx: Tx, request: SessionRequested, data: dict[str, object]) -> str | None:
        """Why the escrow must not open this session, or None. Adds the station's chain facts
        to ``data`` (kept with the session for its CDR and meter verification)."""
        if self.reader is None:
            return "the escrow contract is not configured (CHARGENET_ESCROW_ADDRESS)"
        if request.max_amount <= 0:
            return "the maximum must be positive"
        try:
            driver, nonce = parse_session_id(bytes.fromhex(request.chain_session_id[2:]))
        except ValueError as error:
            return f"chain_session_id: {error}"
        if driver != to_checksum_address(request.driver_address) or nonce != request.driver_nonce:
            return "chain_session_id does not belong to this driver and nonce"
        # Checked here, not where the open is built: a request that cannot be encoded would
        # otherwise stay REQUESTED and fail every batch of opens it is picked for.
        for name, value in (
            ("authorisation_r", request.authorisation_r),
            ("authorisation_vs", request.authorisation_vs),
        ):
            if _bytes32(value) is None:
                return f"{name}: not a 0x-hex bytes32"
        try:
            tariff = Tariff.model_validate(request.tariff)
        except ValidationError as error:
            return f"the tariff document is invalid: {error.errors()[0]['msg']}"
        if tariff.country_code is None or tariff.party_id is None:
            return "the tariff document names no CPO (country_code and party_id)"
        station_id = _bytes32(request.station_id)
        if station_id is None:
            return "station_id: not a 0x-hex bytes32"
        station = (
            tx.stations[station_id]
            if station_id in tx.stations
            else self.reader.station(station_id)
        )
        if station is None:
            return "unknown station"
        if not station.active:
            return "the station is retired"
        if station.info.tariff_hash != tariff_hash(request.tariff):
            return "the tariff document does not match the station's on-chain tariff hash"
        data[STATION_KEY] = {
            "index": station.index,
            "cpo": station.cpo,
            "latitude_e6": station.info.latitude_e6,
            "longitude_e6": station.info.longitude_e6,
            "meter_key_hash": "0x" + station.info.meter_key_hash.hex(),
        }
        return None

    def _ensure_topic(self, topic: str) -> None:
        if self.bus is not None and topic not in self._topics:
            self.bus.ensure_topics([topic])
            self._topics.add(topic)

    # -- charge point events -----------------------------------------------------------------
    def _started(self, tx: Tx, envelope: Envelope) -> None:
        started = envelope.payload(SessionStarted)
        row = self.core.locked(tx, started.session_id)
        if row is None:
            return
        if State(row.state) is not State.STARTING:
            if (
                State(row.state) in (State.CANCELLING, State.REFUNDED)
                and row.transaction_id is None
            ):
                # Started after the escrow gave up on it: nothing pays for this energy, stop it.
                row.transaction_id = started.transaction_id
                self.core.stop_command(tx, row)
            return
        tx.move(row, State.CHARGING)
        row.transaction_id = started.transaction_id
        row.started_at = started.started_at
        row.last_activity_at = utcnow()
        tx.record_sample(row.session_id, "start", started.started_at, started.meter_start_wh)

    def _meter(self, tx: Tx, envelope: Envelope) -> str | None:
        """Record the sample; returns the session to price, or None if it is not charging."""
        reading = envelope.payload(MeterReading)
        row = self.core.locked(tx, reading.session_id)
        if row is None or State(row.state) not in (State.CHARGING, State.STOPPING):
            return None
        row.last_activity_at = utcnow()
        tx.record_sample(
            row.session_id,
            "meter",
            reading.measured_at,
            reading.energy_wh,
            reading.power_w,
            json.dumps([reading.signed_data] if reading.signed_data else []),
        )
        return row.session_id

    def _price(self, tx: Tx, session_ids: Collection[str]) -> None:
        """The cost so far of these sessions, and the budget stop.

        A session's price is this process's running price with the new samples booked; one it
        has not seen all the other samples of (its first meter value here, another replica's
        samples, a restart) is built from all its stored rows, read for the whole batch at
        once. The new running prices are kept once the transaction commits (a rollback leaves
        the previous ones, still matching what is stored).
        """
        if not session_ids:
            return
        ids = sorted(session_ids)
        tx.write_samples()  # counted and read below with this batch's samples
        # Counted only where there is a running price to check (a first meter value has none).
        stored: dict[str, int] = {}
        if known := [session_id for session_id in ids if session_id in self._prices]:
            with tx.session.no_autoflush:  # see ``stored_samples``
                counts = tx.session.execute(_COUNT_SAMPLES, {"ids": known}).all()
            stored = {session_id: count for session_id, count in counts}
        prices: dict[str, RunningPrice | None] = {}
        for session_id in ids:
            new = tx.samples.pop(session_id, [])
            prices[session_id] = None
            if session_id in stored:
                cached = self._prices.get(session_id, covering=stored[session_id] - len(new))
                if cached is not None:
                    prices[session_id] = cached.extended(new, drop_backwards=True)
        rows: dict[str, list[StoredSample]] = defaultdict(list)
        if cold := [session_id for session_id, running in prices.items() if running is None]:
            rows = stored_samples(tx, cold)
            stored.update({session_id: len(rows[session_id]) for session_id in cold})
        for session_id in ids:
            row = self.core.locked(tx, session_id)
            if row is None:
                continue
            try:
                running = prices[session_id] or running_price(row, rows[session_id])
            except PricingError as error:
                log.warning("session %s: cannot price so far: %s", session_id, error)
                continue
            keep = functools.partial(
                self._prices.put, session_id, running, covering=stored[session_id]
            )
            tx.after_commit(keep)
            self._budget_check(tx, row, running)

    def _budget_check(self, tx: Tx, row: SessionRow, running: RunningPrice) -> None:
        if running.count < 2:
            return
        row.cost_so_far = running.result().total_incl_vat_units
        if State(row.state) is State.CHARGING and row.cost_so_far >= self.budget(row):
            tx.move(row, State.STOPPING, f"budget: cost so far {row.cost_so_far}")
            row.stop_reason = "budget"
            tx.emit(StopRequested(session_id=row.session_id, reason="budget"), row.session_id)
            self.core.stop_command(tx, row)

    def budget(self, row: SessionRow) -> int:
        """The cost at which the escrow stops the charge point."""
        settings = self.core.settings
        margin = max(
            settings.escrow_budget_margin_units,
            row.max_amount * settings.escrow_budget_margin_percent // 100,
        )
        return max(row.max_amount - margin, 0)

    def _stop_requested(self, tx: Tx, envelope: Envelope) -> None:
        stop = envelope.payload(StopRequested)
        row = self.core.locked(tx, stop.session_id)
        if row is None:
            return
        state = State(row.state)
        if state is State.CHARGING:
            tx.move(row, State.STOPPING, f"stop requested: {stop.reason}")
            row.stop_reason = stop.reason
            self.core.stop_command(tx, row)
        elif state in (State.OPEN, State.STARTING):
            cancel(self.core, tx, row, f"stop requested before the start: {stop.reason}")

    def _stopped(self, tx: Tx, envelope: Envelope) -> None:
        stopped = envelope.payload(SessionStopped)
        row = self.core.locked(tx, stopped.session_id)
        if row is None or State(row.state) not in (State.CHARGING, State.STOPPING):
            return
        tx.record_sample(
            row.session_id,
            "stop",
            stopped.stopped_at,
            stopped.meter_stop_wh,
            signed_data=json.dumps(list(stopped.signed_data)),
        )
        self._prices.forget(row.session_id)  # priced from all its rows from now on
        row.stop_reason = row.stop_reason or stopped.reason
        # Closed with the batch's other stops (``_apply``), before any later event of its own.
        tx.stopped[row.session_id] = Stopped(
            row, end=stopped.stopped_at, reason=f"stopped: {stopped.reason}"
        )

    # -- gateway results ---------------------------------------------------------------------
    def _command_result(self, tx: Tx, envelope: Envelope) -> None:
        result = envelope.payload(CommandResult)
        if result.session_id is None or result.status is CommandStatus.ACCEPTED:
            return
        row = self.core.locked(tx, result.session_id)
        if row is None:
            return
        what = f"{result.action} {result.status.value}: {result.error or result.response}"
        if result.command_id == row.start_command_id and State(row.state) is State.STARTING:
            cancel(self.core, tx, row, f"the charge point did not start ({what})")
        elif result.command_id == row.stop_command_id:
            # The session timeout settles it on its last meter value if the stop never comes.
            log.warning("session %s: stop command failed: %s", row.session_id, what)


def _needs_action(envelope: Envelope) -> bool:
    """A command result the escrow acts on: a session's command that was not accepted."""
    result = envelope.payload(CommandResult)
    return result.session_id is not None and result.status is not CommandStatus.ACCEPTED


def stored_samples(tx: Tx, session_ids: Sequence[str]) -> defaultdict[str, list[StoredSample]]:
    """The stored samples of these sessions, in one statement (a session without any: none).

    Samples are written by statements, not the unit of work: reading them needs no flush, and
    the batch's row changes go out in the commit's one flush, not one per read."""
    samples: defaultdict[str, list[StoredSample]] = defaultdict(list)
    with tx.session.no_autoflush:
        for found in tx.session.execute(_SAMPLES_OF, {"ids": list(session_ids)}):
            samples[found.session_id].append(cast(StoredSample, found))
    return samples


def close(
    core: EscrowCore,
    tx: Tx,
    row: SessionRow,
    *,
    end: datetime | None,
    reason: str,
    samples: Sequence[StoredSample] | None = None,
) -> None:
    """CHARGING/STOPPING -> STOPPED with the session priced (SessionPriced published); a session
    that delivered nothing priceable is cancelled instead (the whole maximum goes back).
    ``samples``: all its stored samples, when the caller read them (else they are read here)."""
    if samples is None:
        samples = stored_samples(tx, [row.session_id])[row.session_id]
    now = utcnow()
    try:
        settlement = settle_session(row, samples, core.settings, end=end, now=now)
    except NothingToSettle as error:
        cancel(core, tx, row, f"{reason}; nothing to settle ({error})")
        return
    tx.move(row, State.STOPPED, reason)
    row.stopped_at = now
    row.amount_settled = settlement.amount
    row.cost_so_far = settlement.price
    row.cdr = settlement.cdr.model_dump_json()
    row.cdr_hash = settlement.cdr_hash
    row.meter_verified = settlement.meter_verified
    row.signed_meter_data = json.dumps(settlement.signed)
    tx.emit(
        SessionPriced(
            session_id=row.session_id,
            amount=settlement.amount,
            cdr_hash=settlement.cdr_hash,
            cdr=json.loads(row.cdr),
        ),
        row.session_id,
    )


def cancel(core: EscrowCore, tx: Tx, row: SessionRow, reason: str) -> None:
    """-> CANCELLING: the CPO's operator key cancels on chain; the whole maximum goes back."""
    from chargenet.escrow.operations import stage_close

    tx.move(row, State.CANCELLING, reason)
    tx.emit(SessionCancelled(session_id=row.session_id, reason=reason), row.session_id)
    stage_close(core, tx, [row], "cancel")


def _bytes32(text: str) -> bytes | None:
    """A 0x-hex bytes32 (a station's id in the registry contract, half of a compact
    signature), or None if it is not one."""
    if len(text) != 66 or not text.startswith("0x"):
        return None
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        return None
