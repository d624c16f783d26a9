"""The demo scenario, against any running network: two CPOs put stations on chain, charge points
come online over OCPP 1.6J and 2.0.1, drivers top up and charge through the wallet's REST API.

Each round runs, at once: sessions the driver stops, a session the car ends itself (full), one
that reaches its budget (the escrow stops it before the cost reaches the locked maximum) and one
whose charge point rejects the remote start (the escrow gives the whole lock back).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chargenet.cli.network.client import (
    FINAL_STATES,
    Driver,
    NetworkClient,
    eventually,
    station_for,
)
from chargenet.cli.network.fleet import ChargingProfile, SimStation, StationEvent
from chargenet.cli.network.plan import Cpo

TOP_UP = 50_000_000  # 50.00 EUR per driver
MAXIMUM = 30_000_000  # what a normal session may cost at most
BUDGET = 4_000_000  # the budget session's maximum: 4.00 EUR


def eur(units: int) -> str:
    return f"{units / 1_000_000:,.2f} EUR"


@dataclass
class Planned:
    """One session of the scenario and what became of it."""

    label: str  # driver stop / car full / budget / rejected start
    expect: str  # settled / refunded
    cpo: Cpo
    charge_point_id: str
    station_id: str
    driver: Driver
    max_amount: int
    stop_after: float | None = None  # seconds of charging before the driver stops it
    session_id: str = ""
    requested_at: datetime | None = None
    requested_clock: float = 0.0
    remote_start_at: datetime | None = None
    final: dict[str, Any] = field(default_factory=dict)
    final_clock: float = 0.0

    @property
    def start_latency(self) -> float | None:
        if self.requested_at is None or self.remote_start_at is None:
            return None
        return (self.remote_start_at - self.requested_at).total_seconds()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


@dataclass
class ScenarioResult:
    sessions: list[Planned]
    drivers: list[Driver]
    stations: dict[str, str]  # charge point id -> station id
    invoices: list[tuple[str, Path]]  # (number, PDF path)
    seconds: float

    def start_latencies(self) -> list[float]:
        return [s.start_latency for s in self.sessions if s.start_latency is not None]

    def settle_latencies(self) -> list[float]:
        return [
            s.final_clock - s.requested_clock
            for s in self.sessions
            if s.final.get("state") == "settled" and s.final_clock
        ]


class DemoScenario:
    def __init__(
        self,
        client: NetworkClient,
        cpos: tuple[Cpo, ...],
        meter_seed: str,
        out: Callable[[str], None] = print,
        *,
        stations: int = 3,
        rounds: int = 2,
        invoice_dir: Path | None = None,
        profile_speedup: float = 120.0,
    ) -> None:
        if stations < 3:
            raise ValueError("the scenario needs at least 3 stations per CPO")
        self.client = client
        self.cpos = cpos
        self.meter_seed = meter_seed
        self.out = out
        self.stations_per_cpo = stations
        self.rounds = rounds
        self.invoice_dir = invoice_dir
        self.speedup = profile_speedup
        self.fleet: list[SimStation] = []
        self._started = time.monotonic()
        self._waiting: dict[str, Planned] = {}  # id token -> the session waiting for its start

    def say(self, text: str) -> None:
        self.out(f"[{time.monotonic() - self._started:6.1f}s] {text}")

    # -- set-up ------------------------------------------------------------------------------------
    def _rejecting(self, cpo: Cpo) -> str:
        return cpo.charge_points[self.stations_per_cpo - 1] if cpo is self.cpos[0] else ""

    async def setup(self, gateways: dict[str, list[str]]) -> dict[str, str]:
        """Register every station through the registry, then bring its charge point online."""
        registered: dict[str, str] = {}
        for cpo in self.cpos:
            ids = await asyncio.gather(
                *(
                    self.client.register_station(cpo, cp, index, self.meter_seed)
                    for index, cp in enumerate(cpo.charge_points[: self.stations_per_cpo])
                )
            )
            registered.update(zip(cpo.charge_points, ids, strict=False))
            self.say(
                f"{cpo.name} ({cpo.cpo_id}) registered {len(ids)} stations on chain via the "
                f"registry, tariff {cpo.tariff['id']}: {', '.join(ids)}"
            )
        for cpo in self.cpos:
            urls = gateways[cpo.cpo_id]
            for index, cp in enumerate(cpo.charge_points[: self.stations_per_cpo]):
                station = station_for(
                    cpo,
                    cp,
                    urls[index % len(urls)],
                    self.meter_seed,
                    profile=self._profile(cpo, cp),
                    reject_start=cp == self._rejecting(cpo),
                    listener=self._on_station,
                )
                self.fleet.append(station)
        await asyncio.gather(*(station.connect() for station in self.fleet))
        await asyncio.gather(
            *(self.client.wait_available(registered[s.charge_point_id]) for s in self.fleet)
        )
        for cpo in self.cpos:
            self.say(
                f"{cpo.cpo_id}: {self.stations_per_cpo} charge points online over OCPP "
                f"{cpo.ocpp_version} (Basic auth, OCMF-signing meters)"
            )
        return registered

    def _profile(self, cpo: Cpo, cp: str) -> ChargingProfile:
        if cp == self.cpos[1].charge_points[2]:
            # The budget session: the escrow stops it once the cost reaches the lock minus a 5 %
            # margin, so each reading must add well under that margin (here a third of it) or
            # the last one before the stop lands above the lock.
            return ChargingProfile(power_w=cpo.power_w, tick_seconds=0.2, speedup=34.0)
        # The second charge point of each CPO serves a car that is full after a few readings.
        full = cp == cpo.charge_points[1]
        return ChargingProfile(
            power_w=cpo.power_w,
            tick_seconds=0.5,
            speedup=self.speedup,
            max_ticks=6 if full else None,
        )

    async def drivers(self, count: int) -> list[Driver]:
        drivers = await asyncio.gather(*(self.client.driver() for _ in range(count)))
        await asyncio.gather(*(self.client.top_up(d, TOP_UP) for d in drivers))
        self.say(f"{count} drivers created and topped up with {eur(TOP_UP)} each (wallet REST)")
        return list(drivers)

    # -- sessions ----------------------------------------------------------------------------------
    def plan_round(
        self, number: int, drivers: list[Driver], stations: dict[str, str]
    ) -> list[Planned]:
        a, b = self.cpos[0], self.cpos[1]
        layout = [
            ("driver stop", "settled", a, a.charge_points[0], MAXIMUM, 2.5),
            ("car full", "settled", a, a.charge_points[1], MAXIMUM, None),
            ("rejected start", "refunded", a, a.charge_points[2], MAXIMUM, None),
            ("driver stop", "settled", b, b.charge_points[0], MAXIMUM, 2.0),
            ("car full", "settled", b, b.charge_points[1], MAXIMUM, None),
            ("budget", "settled", b, b.charge_points[2], BUDGET, None),
        ]
        planned = []
        for index, (label, expect, cpo, cp, maximum, stop_after) in enumerate(layout):
            driver = drivers[(index + number) % len(drivers)]
            planned.append(
                Planned(label, expect, cpo, cp, stations[cp], driver, maximum, stop_after)
            )
        return planned

    async def run_session(self, planned: Planned) -> Planned:
        client, driver = self.client, planned.driver
        self._waiting[driver.id_token] = planned
        planned.requested_at = datetime.now(UTC)
        planned.requested_clock = time.monotonic()
        planned.session_id = await client.request_session(
            driver, planned.station_id, planned.max_amount
        )
        if planned.stop_after is not None:
            view = await client.wait_state(driver, planned.session_id, ("charging", *FINAL_STATES))
            if view["state"] == "charging":
                await asyncio.sleep(planned.stop_after)
                await client.stop_session(driver, planned.session_id)
        planned.final = await client.wait_state(driver, planned.session_id, FINAL_STATES, 120)
        planned.final_clock = time.monotonic()
        self._waiting.pop(driver.id_token, None)
        final = planned.final
        if final["state"] == "settled":
            self.say(
                f"settled: CPO paid {eur(final['amount_settled'])} for "
                f"{final['energy_wh'] / 1000:.3f} kWh at {planned.charge_point_id} "
                f"({planned.label}); driver refunded {eur(final['amount_refunded'] or 0)}"
            )
        else:
            self.say(
                f"{final['state']}: {planned.charge_point_id} ({planned.label}), "
                f"{eur(final['amount_refunded'] or 0)} back to the driver; reason {final['reason']}"
            )
        return planned

    def _on_station(self, event: StationEvent) -> None:
        planned = self._waiting.get(event.id_token) if event.id_token else None
        starting = event.kind in ("remote_start", "rejected")
        if starting and planned is not None and planned.remote_start_at is None:
            planned.remote_start_at = event.at
        if event.kind == "remote_start":
            self.say(f"{event.charge_point_id} <- remote start for token {event.id_token}")
        elif event.kind == "rejected":
            self.say(f"{event.charge_point_id} rejected the remote start ({event.id_token})")
        elif event.kind == "remote_stop":
            self.say(
                f"{event.charge_point_id} <- remote stop of transaction {event.transaction_id}"
            )
        elif event.kind == "stopped":
            self.say(
                f"{event.charge_point_id} transaction ended at {event.energy_wh / 1000:.3f} kWh "
                "(signed OCMF end reading sent)"
            )

    # -- the whole -------------------------------------------------------------------------------
    async def run(self, gateways: dict[str, list[str]], drivers: int = 6) -> ScenarioResult:
        self._started = time.monotonic()
        stations = await self.setup(gateways)
        people = await self.drivers(drivers)
        sessions: list[Planned] = []
        for number in range(self.rounds):
            planned = self.plan_round(number, people, stations)
            self.say(f"round {number + 1}: {len(planned)} sessions requested at once")
            sessions.extend(await asyncio.gather(*(self.run_session(p) for p in planned)))
        invoices = await self.collect_invoices(sessions)
        return ScenarioResult(
            sessions, people, stations, invoices, time.monotonic() - self._started
        )

    async def collect_invoices(self, sessions: list[Planned]) -> list[tuple[str, Path]]:
        """Each settled session's invoice, fetched as PDF (Factur-X) from the invoicing API."""
        settled = [s for s in sessions if s.final.get("state") == "settled"]
        found: dict[str, dict[str, Any]] = {}

        async def all_issued() -> bool:
            for driver in {id(s.driver): s.driver for s in settled}.values():
                for invoice in await self.client.invoices(driver.headers):
                    found[invoice["session_id"]] = invoice
            return all(s.session_id in found for s in settled)

        await eventually("an invoice for every settled session", all_issued, 60, every=0.3)
        written: list[tuple[str, Path]] = []
        for planned in settled:
            number = found[planned.session_id]["number"]
            pdf = await self.client.invoice_pdf(planned.driver.headers, number)
            if self.invoice_dir is not None:
                self.invoice_dir.mkdir(parents=True, exist_ok=True)
                path = self.invoice_dir / f"{number}.pdf"
                path.write_bytes(pdf)
                written.append((number, path))
            else:
                written.append((number, Path(number)))
        self.say(f"{len(written)} invoices issued (gapless numbers per CPO), PDFs fetched")
        return written

    async def close(self) -> None:
        await asyncio.gather(*(station.close() for station in self.fleet), return_exceptions=True)


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    p50, p95, p99 = (percentile(values, q) * 1000 for q in (0.5, 0.95, 0.99))
    return (
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms, max {max(values) * 1000:.0f} ms "
        f"(n={len(values)}, mean {statistics.fmean(values) * 1000:.0f} ms)"
    )
