"""Simulated charge points that behave like chargers: the one simulator behind ``chargenet
simulate``, the demo, the end-to-end tests and the benchmark.

Each :class:`SimStation` is an ``ocpp_sim`` charge point (1.6J or 2.0.1) that connects with Basic
auth, boots, reports its connector, heartbeats, and answers the central system's remote start by
running a transaction: a begin reading, periodic meter values from a power curve, each one an OCMF
record signed with the meter's own key, and a signed end reading when the central system stops it
(or the car is full). Time is compressed (``speedup``) so a demo session charges kWh in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ocpp.v16.enums import Action as Action16
from ocpp.v201.enums import Action as Action201

from chargenet.core.aio import wait_event
from chargenet.core.ocpp_sim import ChargePoint16, ChargePoint201, Endpoint
from chargenet.core.ocpp_sim.base import after
from chargenet.core.ocpp_sim.meter import ALGORITHM, OcmfMeter

log = logging.getLogger(__name__)

OCPP_VERSIONS = ("1.6", "2.0.1")


@dataclass(frozen=True)
class ChargingProfile:
    """How a simulated car charges: ``power_w`` with a little noise, one meter value every
    ``tick_seconds`` of wall time, each worth ``speedup`` times as much charging time."""

    power_w: int = 11_000
    tick_seconds: float = 0.5
    speedup: float = 120.0
    #: The car is full after this many meter values and stops itself (None: only a stop does).
    max_ticks: int | None = None

    def energy_step(self, rng: random.Random) -> int:
        power = self.power_w * rng.uniform(0.92, 1.0)
        return max(1, round(power * self.tick_seconds * self.speedup / 3600))


@dataclass(frozen=True)
class StationEvent:
    charge_point_id: str
    kind: str  # remote_start, rejected, started, meter, stopped, remote_stop
    at: datetime
    id_token: str = ""
    transaction_id: str = ""
    energy_wh: int = 0


Listener = Callable[[StationEvent], None]


class _Charger16(ChargePoint16):
    station: SimStation

    @after(Action16.remote_start_transaction)
    async def _after_remote_start(self, id_tag: str, connector_id: int = 1, **_: Any) -> None:
        self.station.remote_start(id_tag, connector_id)

    @after(Action16.remote_stop_transaction)
    async def _after_remote_stop(self, transaction_id: int) -> None:
        self.station.remote_stop(str(transaction_id))


class _Charger201(ChargePoint201):
    station: SimStation

    @after(Action201.request_start_transaction)
    async def _after_request_start(self, id_token: dict[str, Any], **rest: Any) -> None:
        self.station.remote_start(str(id_token["id_token"]), int(rest.get("evse_id") or 1))

    @after(Action201.request_stop_transaction)
    async def _after_request_stop(self, transaction_id: str, **_: Any) -> None:
        self.station.remote_stop(transaction_id)


@dataclass
class SimStation:
    """One simulated charge point with one connector (EVSE 1 in 2.0.1)."""

    charge_point_id: str
    version: str
    endpoint: Endpoint
    meter: OcmfMeter
    profile: ChargingProfile = field(default_factory=ChargingProfile)
    #: Answer the remote start with Rejected (a charger that is out of order, a locked cable).
    reject_start: bool = False
    listener: Listener | None = None
    meter_start_wh: int = 0
    #: Check each OCPP message against its schema (see ``ocpp_sim.base.SimulatorMixin``).
    check_messages: bool = True
    cp: ChargePoint16 | ChargePoint201 | None = None
    transactions: dict[str, asyncio.Event] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.version not in OCPP_VERSIONS:
            raise ValueError(f"OCPP version {self.version!r}: use one of {OCPP_VERSIONS}")
        self._rng = random.Random(self.charge_point_id)

    async def connect(self) -> None:
        """Connect, boot, report the connector Available and start heartbeating."""
        answers = {}
        if self.reject_start:
            answers = {"RemoteStartTransaction": "Rejected", "RequestStartTransaction": "Rejected"}
        cls = _Charger16 if self.version == "1.6" else _Charger201
        cp = await cls.connect(
            self.endpoint,
            self.charge_point_id,
            answers=answers,
            check_messages=self.check_messages,
        )
        cp.station = self
        cp.meter_wh = self.meter_start_wh
        self.cp = cp
        boot = await cp.boot()
        await self._status("Available")
        interval = max(10, int(getattr(boot, "interval", 300) or 300))
        self._spawn(self._heartbeat(interval))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.cp is not None:
            await self.cp.close()

    # -- what the central system asks ----------------------------------------------------------
    def remote_start(self, id_token: str, connector: int) -> None:
        now = datetime.now(UTC)
        if self.reject_start:
            self._emit(StationEvent(self.charge_point_id, "rejected", now, id_token))
            return
        self._emit(StationEvent(self.charge_point_id, "remote_start", now, id_token))
        self._spawn(self._transaction(id_token, connector))

    def remote_stop(self, transaction_id: str) -> None:
        stop = self.transactions.get(transaction_id)
        self._emit(
            StationEvent(self.charge_point_id, "remote_stop", datetime.now(UTC), "", transaction_id)
        )
        if stop is not None:
            stop.set()

    # -- a transaction ---------------------------------------------------------------------------
    async def _transaction(self, id_token: str, connector: int) -> None:
        cp = self.cp
        assert cp is not None
        energy = cp.meter_wh
        if isinstance(cp, ChargePoint16):
            transaction, status = await cp.start_transaction(connector, id_token, energy)
            transaction_id = str(transaction)
            if status != "Accepted":
                self._emit(StationEvent(cp.id, "rejected", datetime.now(UTC), id_token))
                return
            stop = self.transactions[transaction_id] = asyncio.Event()
            await self._status("Charging")
            await cp.meter_values(
                connector,
                transaction,
                energy,
                power_w=self.profile.power_w,
                signed=self.meter.begin(transaction_id, energy),
            )
        else:
            transaction_id = uuid.uuid4().hex[:20]
            stop = self.transactions[transaction_id] = asyncio.Event()
            begin = self.meter.begin(transaction_id, energy)
            result = await cp.transaction_event(
                "Started",
                transaction_id,
                trigger="RemoteStart",
                id_token=id_token,
                energy_wh=energy,
                signed=self._signed(begin),
                evse_id=connector,
            )
            if str((result.id_token_info or {}).get("status", "Accepted")) != "Accepted":
                self.transactions.pop(transaction_id, None)
                self._emit(StationEvent(cp.id, "rejected", datetime.now(UTC), id_token))
                return
            await self._status("Occupied")
        self._emit(StationEvent(cp.id, "started", datetime.now(UTC), id_token, transaction_id))
        remote = await self._charge(cp, connector, transaction_id, stop)
        energy = cp.meter_wh
        end = self.meter.end(energy, remote=remote)
        if isinstance(cp, ChargePoint16):
            await cp.stop_transaction(
                int(transaction_id),
                energy,
                reason="Remote" if remote else "EVDisconnected",
                signed=[end],
            )
        else:
            await cp.transaction_event(
                "Ended",
                transaction_id,
                trigger="RemoteStop" if remote else "EVCommunicationLost",
                energy_wh=energy,
                signed=self._signed(end),
                evse_id=connector,
                stopped_reason="Remote" if remote else "EVDisconnected",
            )
        self.transactions.pop(transaction_id, None)
        self._emit(
            StationEvent(cp.id, "stopped", datetime.now(UTC), id_token, transaction_id, energy)
        )
        await self._status("Available")

    async def _charge(
        self,
        cp: ChargePoint16 | ChargePoint201,
        connector: int,
        transaction_id: str,
        stop: asyncio.Event,
    ) -> bool:
        """Meter values until a remote stop (returns True) or the car is full (False)."""
        ticks = 0
        while True:
            if await wait_event(stop, self.profile.tick_seconds):
                return True
            energy = cp.meter_wh + self.profile.energy_step(self._rng)
            record = self.meter.update(energy)
            if isinstance(cp, ChargePoint16):
                await cp.meter_values(
                    connector,
                    int(transaction_id),
                    energy,
                    power_w=self.profile.power_w,
                    signed=record,
                )
            else:
                await cp.transaction_event(
                    "Updated",
                    transaction_id,
                    trigger="MeterValuePeriodic",
                    energy_wh=energy,
                    signed=self._signed(record),
                    evse_id=connector,
                )
            self._emit(StationEvent(cp.id, "meter", datetime.now(UTC), "", transaction_id, energy))
            ticks += 1
            if self.profile.max_ticks is not None and ticks >= self.profile.max_ticks:
                return False

    def _signed(self, record: str) -> dict[str, str]:
        """A 2.0.1 signedMeterValue around an OCMF record."""
        return {
            "signedMeterData": record,
            "signingMethod": ALGORITHM,
            "encodingMethod": "OCMF",
            "publicKey": self.meter.public_key_hex,
        }

    async def _status(self, status: str) -> None:
        cp = self.cp
        if isinstance(cp, ChargePoint16):
            await cp.status(1, status)
        elif cp is not None:
            await cp.status(1, 1, status)

    async def _heartbeat(self, interval: int) -> None:
        assert self.cp is not None
        while True:
            await asyncio.sleep(interval)
            await self.cp.heartbeat()

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s: %s", self.charge_point_id, task.exception())

    def _emit(self, event: StationEvent) -> None:
        if self.listener is not None:
            self.listener(event)


def meter_for(seed: str, charge_point_id: str) -> OcmfMeter:
    """The meter of a charge point: serial ``MS-<id>``, key from the seed (see OcmfMeter)."""
    return OcmfMeter.derive(seed, f"MS-{charge_point_id}", charge_point_id)
