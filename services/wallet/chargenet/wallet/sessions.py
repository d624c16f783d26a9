"""Asking to charge, and asking to stop: the driver's side of a session.

A request is checked (station active, charge point online, connector free, maximum within the
balance), gets the driver's next escrow nonce and the driver's EIP-712 ``OpenSession``
authorisation from the signer, and is written together with its ``SessionRequested`` event in one
transaction (the outbox relay publishes it). The same ``Idempotency-Key`` returns the same
session and publishes nothing more. The event also carries the driver's billing details as they
are at that moment (:mod:`chargenet.wallet.billing`): invoicing makes the invoice out to them.

Where the time goes: the registry's answer, the chain's (balance at one block) and the key check
run at once; the balance, open sessions and key are then decided in the one transaction, with the
driver's row locked so that no two requests (of any replica) promise the same balance.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.exc import IntegrityError

from chargenet.core.chain import open_session_typed_data, session_id
from chargenet.core.chain.rpc import ChainReadError
from chargenet.core.db import Database
from chargenet.core.db.group_commit import GroupCommit
from chargenet.core.db.outbox import UnitOfWork, unit_of_work
from chargenet.core.db.tables import utcnow
from chargenet.core.errors import (
    ChargenetError,
    Conflict,
    Forbidden,
    NotFound,
    Unprocessable,
    reasons,
)
from chargenet.core.events import SessionRequested, StopRequested
from chargenet.core.pricing import MeterSample, PricingError, Tariff, price_samples, tariff_of
from chargenet.core.signer_client import SignerClient, SignerError
from chargenet.wallet import metrics
from chargenet.wallet.billing import Billing
from chargenet.wallet.chain import ChainReader, Snapshot
from chargenet.wallet.funds import UNLOCKED_STATES, ServiceUnavailable, TokenAmount, check_amount
from chargenet.wallet.locks import KeyedLocks
from chargenet.wallet.models import (
    LOCK_SESSIONS,
    BillingDetails,
    ChargingSession,
    Driver,
    request_stop,
)
from chargenet.wallet.registry_client import (
    Connector,
    RegistryClient,
    RegistryUnavailable,
    Station,
)
from chargenet.wallet.settings import WalletSettings
from chargenet.wallet.signals import SessionSignals

SOURCE = "wallet"
#: States after which the session's escrow slot is free again (see the contracts' ring).
CLOSED_STATES = ("settled", "refunded", "cancelled")
#: States after which nothing more happens that the driver waits for.
FINAL_STATES = ("settled", "refunded", "failed", "cancelled")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")
#: Power assumed to turn a kWh maximum into time when the connector states none (11 kW AC).
DEFAULT_POWER_W = 11_000
RING_SIZE = 8
#: Stations whose last registry answer is kept (the oldest goes first).
KNOWN_STATIONS = 10_000

# Every session request runs these: built once, so SQLAlchemy works out each one's cache key
# once (for the driver's join it was a tenth of the wallet's CPU in a burst of requests).
_DRIVER = (
    sa.select(Driver, BillingDetails)
    .outerjoin(BillingDetails, BillingDetails.driver_id == Driver.driver_id)
    .where(Driver.number == sa.bindparam("number"))
)
#: The driver's row locked: requests of one driver are decided one at a time, in every replica.
_DRIVER_LOCKED = _DRIVER.with_for_update(of=Driver)
_KEYED = sa.select(ChargingSession).where(
    ChargingSession.driver_id == sa.bindparam("driver_id"),
    ChargingSession.idempotency_key == sa.bindparam("key"),
)
_OPEN_OR_KEYED = sa.select(
    ChargingSession.driver_nonce,
    ChargingSession.max_amount,
    ChargingSession.state,
    ChargingSession.idempotency_key,
).where(
    ChargingSession.driver_id == sa.bindparam("driver_id"),
    sa.or_(
        ChargingSession.state.not_in(CLOSED_STATES),
        ChargingSession.idempotency_key == sa.bindparam("key"),
    ),
)


class _Repeated(Exception):
    """The request's idempotency key was taken after the first check."""


class _StationChanged(Exception):
    """The registry's fresh answer differs from the one the request was built from."""


@dataclass(frozen=True)
class _Plan:
    station: Station
    connector: Connector
    maximum: int
    body: SessionRequestBody


def _without_live_state(station: Station) -> Station:
    """The station but its connectors' live state (status, online): what changes only with a
    new version of its documents or its retirement (``active``)."""
    return replace(
        station,
        connectors=tuple(
            replace(c, status=None, online=False, offline_reason=None) for c in station.connectors
        ),
    )


class SessionRequestBody(BaseModel):
    """``POST /v1/sessions``: where, and the most it may cost (tokens, or kWh at the tariff)."""

    model_config = ConfigDict(extra="forbid")

    station_id: str = Field(min_length=1, max_length=66)
    connector_id: str = Field(min_length=1, max_length=36)
    evse_uid: str | None = Field(default=None, min_length=1, max_length=36)
    max_amount: TokenAmount | None = None
    max_kwh: Decimal | None = Field(default=None, gt=0, le=1000, allow_inf_nan=False)

    @field_validator("max_kwh", mode="before")
    @classmethod
    def _ascii_digits(cls, value: Any) -> Any:
        # Decimal() reads any script's digits: '\u0661' (Arabic-Indic one) was 1 kWh.
        if isinstance(value, str) and not value.isascii():
            raise ValueError("a decimal number in ASCII digits, e.g. 12.5")
        return value

    @model_validator(mode="after")
    def _one_maximum(self) -> SessionRequestBody:
        if (self.max_amount is None) == (self.max_kwh is None):
            raise ValueError("give exactly one of max_amount (token base units) and max_kwh")
        return self

    def fingerprint(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


def station_tariff(station: Station) -> Tariff:
    """The station's tariff, validated; 409 with the reasons when it does not validate.

    A tariff registered before a limit of the Tariff model (e.g. at most 256 elements) still
    stands in the registry, pinned on chain by its hash, but no session can be priced at it: the
    escrow would refuse the session after it was requested.
    """
    assert station.tariff is not None
    try:
        return tariff_of(json.dumps(station.tariff, sort_keys=True, default=str))
    except ValidationError as error:
        raise Conflict(
            f"the station's tariff is not valid: {reasons(error.errors(), most=5)}"
        ) from None


def kwh_to_tokens(station: Station, power_w: int, kwh: Decimal, now: datetime) -> int:
    """What ``kwh`` cost at the station's tariff, charged from now at the connector's power.

    Time-based components (per hour, parking) depend on how long the energy takes; the
    connector's maximum power gives the shortest time, which is the tariff's price for that
    energy when the car draws full power. The budget check stops the session at the maximum in
    tokens either way.
    """
    tariff = station_tariff(station)
    watts = Decimal(power_w or DEFAULT_POWER_W)
    seconds = kwh * 1000 / watts * 3600
    samples = [
        MeterSample(timestamp=now, energy_wh=Decimal(0)),
        MeterSample(
            timestamp=now + timedelta(seconds=float(seconds)), energy_wh=kwh * Decimal(1000)
        ),
    ]
    try:
        result = price_samples(tariff, samples, time_zone=station.time_zone)
    except PricingError as error:
        raise Unprocessable(f"max_kwh: the station's tariff cannot price it ({error})") from None
    if result.total_incl_vat_units <= 0:
        raise Unprocessable(f"max_kwh: the tariff prices {kwh} kWh at nothing; give max_amount")
    return result.total_incl_vat_units


def view(row: ChargingSession) -> dict[str, Any]:
    """The session as the driver sees it (also each live stream message)."""
    return {
        "session_id": row.session_id,
        "state": row.state,
        "stop_requested": row.stop_requested,
        "station_id": row.station_id,
        "charge_point_id": row.charge_point_id,
        "connector_id": row.connector_id,
        "evse_id": row.evse_id,
        "currency": row.currency,
        "max_amount": row.max_amount,
        "energy_wh": row.energy_wh,
        "cost_so_far": row.cost_so_far,
        "amount_settled": row.amount_settled,
        "amount_refunded": row.amount_refunded,
        "reason": row.reason,
        "chain_session_id": row.chain_session_id,
        "driver_nonce": row.driver_nonce,
        "expiry": _iso(row.expiry),
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "stopped_at": _iso(row.stopped_at),
        "version": row.version,
    }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


class Sessions:
    def __init__(
        self,
        settings: WalletSettings,
        db: Database,
        signer: SignerClient,
        chain: ChainReader,
        registry: RegistryClient,
        billing: Billing,
        signals: SessionSignals | None = None,
    ) -> None:
        self.db = db
        self.billing = billing
        self.signer = signer
        self.chain = chain
        self.registry = registry
        self.signals = signals or SessionSignals()
        self._expiry_seconds = settings.wallet_session_expiry_seconds
        self._max_open = settings.wallet_max_open_sessions
        self._currency = settings.wallet_currency
        self._cpo_ids = settings.cpo_ids()
        self._locks = KeyedLocks()
        self._guard = threading.Lock()
        #: The registry's last answer per station (see ``request``).
        self._stations: dict[str, Station] = {}
        # The registry and chain reads of a request, run beside its database check.
        self._calls = ThreadPoolExecutor(max_workers=16, thread_name_prefix="wallet-request")
        self._stops: GroupCommit[tuple[Driver, str], ChargingSession] = GroupCommit(
            self.stop_all, kind="wallet_stop"
        )

    def close(self) -> None:
        self._calls.shutdown(wait=False, cancel_futures=True)
        self._stops.close()

    # -- request ---------------------------------------------------------------------------------

    def request(
        self, driver: Driver, idempotency_key: str | None, body: SessionRequestBody
    ) -> tuple[ChargingSession, bool]:
        """The session for this key: (row, True) when created now, (row, False) when repeated."""
        # Whole: ``$`` matched before a final newline (the driver pages pass a form field on).
        if idempotency_key is None or not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise Unprocessable("Idempotency-Key: a header of 1-200 printable ASCII characters")
        fingerprint = body.fingerprint()
        # The registry and the chain are asked while the database says whether the key is new:
        # three round trips at once instead of one after another. A repeat ignores their answers.
        station_call = self._calls.submit(self._station, body.station_id)
        chain_call = self._calls.submit(self._snapshot, driver)
        repeated = self._repeat(driver, idempotency_key, fingerprint)
        if repeated is not None:
            return repeated, False
        # The station as the registry last answered goes ahead while the fresh answer is on its
        # way: that one decides before anything commits (see _create), so its round trip runs
        # beside the transaction instead of before it.
        known = self._known_station(body.station_id)
        pending: Future[Station] | None = None
        if known is not None:
            try:
                plan = self._decide(known, body, count=False)
                pending = station_call
            except ChargenetError:
                known = None  # what was known refuses: the fresh answer decides, as below
        if known is None:
            plan = self._decide(station_call.result(), body)
        with self._locks.hold(driver.driver_id) as waited:
            # A request of the same driver went first: what it locked on chain since our read
            # may no longer count as promised, so the balance is read again after it.
            chain = self._snapshot(driver) if waited else chain_call.result()
            try:
                try:
                    row = self._create(driver, idempotency_key, fingerprint, plan, chain, pending)
                except _StationChanged:
                    plan = self._decide(station_call.result(), body)
                    row = self._create(driver, idempotency_key, fingerprint, plan, chain, None)
            except (IntegrityError, _Repeated):
                # Another request (or replica) took this key between our check and our insert.
                repeated = self._repeat(driver, idempotency_key, fingerprint)
                if repeated is None:
                    raise
                return repeated, False
        metrics.SESSION_REQUESTS.labels(outcome="requested").inc()
        return row, True

    def _station(self, station_id: str) -> Station:
        try:
            station = self.registry.station(station_id)
        except RegistryUnavailable as error:
            metrics.SESSION_REQUESTS.labels(outcome="registry_unavailable").inc()
            raise ServiceUnavailable(str(error)) from None
        with self._guard:
            if station_id not in self._stations and len(self._stations) >= KNOWN_STATIONS:
                self._stations.pop(next(iter(self._stations)))
            self._stations[station_id] = station
        return station

    def _known_station(self, station_id: str) -> Station | None:
        with self._guard:
            return self._stations.get(station_id)

    def _decide(self, station: Station, body: SessionRequestBody, *, count: bool = True) -> _Plan:
        """The connector and the maximum in tokens; 409 if the station cannot start now."""
        connector = station.connector(body.connector_id, body.evse_uid)
        try:
            station.check_startable(connector)
            station_tariff(station)
        except Conflict:
            if count:
                metrics.SESSION_REQUESTS.labels(outcome="station_refused").inc()
            raise
        if body.max_amount is not None:
            maximum = check_amount(body.max_amount, "max_amount")
        else:
            assert body.max_kwh is not None
            maximum = kwh_to_tokens(station, connector.max_power_w, body.max_kwh, utcnow())
        return _Plan(station, connector, maximum, body)

    def _snapshot(self, driver: Driver) -> Snapshot:
        # The escrow's last nonce is read only until the wallet has stored one of its own.
        try:
            return self.chain.snapshot(driver.address, nonce=driver.last_nonce is None)
        except ChainReadError as error:
            metrics.SESSION_REQUESTS.labels(outcome="chain_unavailable").inc()
            raise ServiceUnavailable(f"the chain could not be read; try again: {error}") from None

    def _create(
        self,
        driver: Driver,
        idempotency_key: str,
        fingerprint: str,
        plan: _Plan,
        chain: Snapshot,
        pending: Future[Station] | None,
    ) -> ChargingSession:
        station, connector, maximum = plan.station, plan.connector, plan.maximum
        with unit_of_work(self.db, SOURCE) as uow:
            # The driver's row locked: requests of one driver are decided one at a time, in
            # every replica (its open sessions, nonce and promised maxima are read below).
            query = _DRIVER_LOCKED if self.db.is_postgres else _DRIVER
            account, billing = uow.session.execute(query, {"number": driver.number}).one()
            # The driver's open sessions (ring slots, promised maxima) and this key, if taken.
            mine = uow.session.execute(
                _OPEN_OR_KEYED, {"driver_id": driver.driver_id, "key": idempotency_key}
            ).all()
            if any(key == idempotency_key for *_, key in mine):
                raise _Repeated
            promised = sum(amount for _, amount, state, _ in mine if state in UNLOCKED_STATES)
            available = chain.balance.total - promised
            if maximum > available:
                metrics.SESSION_REQUESTS.labels(outcome="above_balance").inc()
                raise Unprocessable(
                    f"max_amount: the maximum {maximum} is above the available balance "
                    f"{available} (top up first)"
                )
            last = account.last_nonce
            if last is None:
                last = chain.last_nonce
            if last is None:
                last = self.chain.last_nonce(driver.address)
            nonce = self._next_nonce(
                {int(n) % RING_SIZE for n, _, state, _ in mine if state not in CLOSED_STATES},
                last,
            )
            chain_session = session_id(driver.address, nonce)
            expiry = chain.timestamp + self._expiry_seconds
            typed = open_session_typed_data(
                chain_id=self.chain.chain_id,
                escrow=self.chain.escrow.address,
                session=chain_session,
                station_id=bytes.fromhex(station.chain_id_hex[2:]),
                maximum=maximum,
                expiry=expiry,
            )
            try:
                signature = self.signer.sign_typed_data(driver.key_alias, typed).signature
            except SignerError as error:
                raise ServiceUnavailable(f"the signer refused to sign: {error.detail}") from None
            if pending is not None:
                # The registry's fresh answer: the request was built from what it says, and the
                # station can start now - else nothing of this transaction commits.
                fresh = pending.result()
                if _without_live_state(fresh) != _without_live_state(station):
                    raise _StationChanged
                self._decide(fresh, plan.body)
            r, s, v = signature[:32], signature[32:64], signature[64]
            # EIP-2098: the y parity rides in the top bit of s.
            vs = (((v - 27) << 255) | int.from_bytes(s, "big")).to_bytes(32, "big")
            row = ChargingSession(
                session_id=str(uuid.uuid4()),
                driver_id=driver.driver_id,
                idempotency_key=idempotency_key,
                request_hash=fingerprint,
                station_id=station.station_id,
                cpo_id=self._cpo_id(station, connector),
                charge_point_id=connector.charge_point_id,
                connector_id=connector.ocpp_connector_id,
                evse_id=connector.evse_id,
                max_amount=maximum,
                currency=self._currency,
                tariff=json.dumps(station.tariff, default=str),
                time_zone=station.time_zone,
                chain_session_id="0x" + chain_session.hex(),
                driver_nonce=nonce,
                expiry=datetime.fromtimestamp(expiry, UTC),
                state="requested",
                stop_requested=False,
                energy_wh=0,
                cost_so_far=0,
                version=1,
            )
            uow.session.add(row)
            account.last_nonce = nonce
            uow.session.flush()
            uow.emit(
                SessionRequested(
                    session_id=row.session_id,
                    driver_id=driver.driver_id,
                    driver_address=driver.address,
                    cpo_id=row.cpo_id,
                    station_id=station.chain_id_hex,
                    charge_point_id=row.charge_point_id,
                    connector_id=row.connector_id,
                    evse_id=row.evse_id,
                    max_amount=maximum,
                    id_token=driver.id_token,
                    idempotency_key=idempotency_key,
                    chain_session_id=row.chain_session_id,
                    driver_nonce=nonce,
                    expiry=row.expiry,
                    authorisation_r="0x" + r.hex(),
                    authorisation_vs="0x" + vs.hex(),
                    tariff=json.loads(row.tariff),
                    time_zone=station.time_zone,
                    # Not yet in the catalogue (extra fields are allowed): OCPP 2.0.1 needs it.
                    ocpp_evse_id=connector.ocpp_evse_id,
                    registry_station_id=station.station_id,
                    billing=self.billing.event_of(billing),
                ),
                subject=row.session_id,
            )
        return row

    def _next_nonce(self, busy: set[int], last: int) -> int:
        """The lowest nonce above ``last`` whose ring slot (``busy``) holds no open session.

        The escrow keeps a driver's sessions in 8 slots (``nonce % 8``) and refuses to open into
        a busy one; skipped nonces are simply never used.
        """
        if len(busy) >= self._max_open:
            metrics.SESSION_REQUESTS.labels(outcome="too_many_open").inc()
            raise Conflict(f"at most {self._max_open} sessions may be open at once")
        nonce = last + 1
        while nonce % RING_SIZE in busy:
            nonce += 1
        return nonce

    def _cpo_id(self, station: Station, connector: Any) -> str:
        # The gateway's CPO id routes the start command; the chain knows only the address.
        return str(
            connector.cpo_id
            or self._cpo_ids.get(station.cpo_address.lower())
            or station.cpo_address.lower()
        )

    def _repeat(self, driver: Driver, key: str, fingerprint: str) -> ChargingSession | None:
        with self.db.session() as session:
            row = session.scalars(_KEYED, {"driver_id": driver.driver_id, "key": key}).one_or_none()
        if row is not None and row.request_hash != fingerprint:
            raise Unprocessable("Idempotency-Key: already used for a different session request")
        if row is not None:
            metrics.SESSION_REQUESTS.labels(outcome="repeated").inc()
        return row

    # -- read and stop ---------------------------------------------------------------------------

    def get(self, driver: Driver, session_id_: str) -> ChargingSession:
        _check_id(session_id_)
        with self.db.session() as session:
            row = session.get(ChargingSession, session_id_)
        return _owned(row, driver, session_id_)

    def list(self, driver: Driver, limit: int, offset: int) -> list[ChargingSession]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    sa.select(ChargingSession)
                    .where(ChargingSession.driver_id == driver.driver_id)
                    .order_by(ChargingSession.created_at.desc())
                    .limit(limit)
                    .offset(offset)
                )
            )

    def stop(self, driver: Driver, session_id_: str) -> Future[ChargingSession]:
        """Ask to stop (once: a repeated stop publishes nothing more). Stops asked for at the
        same moment share one transaction (``stop_all``)."""
        _check_id(session_id_)
        return self._stops.submit((driver, session_id_))

    def stop_all(
        self, asks: Sequence[tuple[Driver, str]]
    ) -> Sequence[ChargingSession | ChargenetError]:
        """Each ask's row, or why it is refused, in one transaction for all."""
        outcomes: list[ChargingSession | ChargenetError] = []
        counted: list[str] = []
        with unit_of_work(self.db, SOURCE) as uow:
            ids = sorted({session_id_ for _driver, session_id_ in asks})
            rows = {row.session_id: row for row in uow.session.scalars(LOCK_SESSIONS, {"ids": ids})}
            for driver, session_id_ in asks:
                try:
                    row = _owned(rows.get(session_id_), driver, session_id_)
                    counted.append(_stop(uow, row))
                    outcomes.append(row)
                except Conflict as too_late:
                    counted.append("too_late")
                    outcomes.append(too_late)
                except ChargenetError as refused:
                    outcomes.append(refused)
        # Counted once committed: a batch that failed is tried again one by one.
        for outcome in counted:
            metrics.STOP_REQUESTS.labels(outcome=outcome).inc()
        self.signals.committed([row for row in outcomes if isinstance(row, ChargingSession)])
        return outcomes


def _stop(uow: UnitOfWork, row: ChargingSession) -> str:
    """Stop the session in the caller's transaction; how the ask came out (a metric's label)."""
    if row.state in FINAL_STATES or row.state in ("stopped", "priced"):
        raise Conflict(f"session {row.session_id} is already {row.state}")
    if row.stop_requested:
        return "repeated"
    # Applied here as the live view applies the escrow's; it passes over this one.
    request_stop(row)
    row.version += 1
    row.updated_at = utcnow()
    uow.emit(StopRequested(session_id=row.session_id, reason="driver"), subject=row.session_id)
    return "requested"


def _check_id(session_id_: str) -> None:
    """404 for an id no session has that the database cannot compare (PostgreSQL: a NUL)."""
    if "\0" in session_id_:
        raise NotFound(f"no session {session_id_}")


def _owned(row: ChargingSession | None, driver: Driver, session_id_: str) -> ChargingSession:
    if row is None:
        raise NotFound(f"no session {session_id_}")
    if row.driver_id != driver.driver_id:
        raise Forbidden(f"session {session_id_} belongs to another driver")
    return row
