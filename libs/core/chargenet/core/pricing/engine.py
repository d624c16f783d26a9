"""The tariff engine: the price of a session's usage under one OCPI tariff, deterministically.

Rules (OCPI 2.2.1 mod_tariffs, with the choices the text leaves open):

1. The usage is cut at every instant where a restriction can change its answer: each ``start_time``
   / ``end_time`` and local midnight (time of day, date, day of week), each ``min_duration`` /
   ``max_duration``, and each ``min_kwh`` / ``max_kwh`` (energy is linear in time inside a sample
   interval). Each piece is then judged at its midpoint, which no boundary can be on.
2. For each dimension, the first element with a component of that dimension whose restrictions
   match prices the piece (ENERGY and TIME while charging, PARKING_TIME while parked). No match:
   that dimension is free there.
3. A new charging period starts whenever the charging state or an active element changes.
4. FLAT is charged once per session, from the first element with a FLAT component that matches
   at the first moment one does.
5. step_size rounds the *session total* of a dimension up to the step of the last component that
   priced it, and the extra volume is billed at that component's price (OCPI's step_size examples
   #1 and #2). It is also applied when the dimension stops being priced because the active element
   has no component for it (OCPI's "switching to Free-of-Charge" note). Energy is billed in whole
   Wh even with ``step_size = 1`` (115.2 Wh bills 116 Wh, as the spec says).
   AMBIGUITY, decided here: OCPI's step_size example #1 says 2 minutes of parking are "within the
   extra 5 minutes of charging" and so not billed, while the "Complex Tariff" example bills
   charging rounded from 147 to 150 minutes *and* all 42 (-> 45) parking minutes. chargenet
   follows the complex example: TIME and PARKING_TIME are rounded independently and rounding one
   never absorbs the other. (Absorbing would make the parking price depend on the TIME step.)
6. VAT is applied per component on exact amounts; a component without ``vat`` has no VAT.
7. ``min_price`` / ``max_price`` clamp the total excl. VAT and the total incl. VAT each against its
   own bound (OCPI's note: both rules apply). When a bound has no ``incl_vat``, its incl. VAT bound
   is the excl. VAT bound times the session's own incl/excl ratio.
8. Every amount stays exact (rationals) until the end. Then the clamped totals excl. and incl.
   VAT are each rounded once, half up, to the currency's ISO 4217 minor unit (cents for EUR), and
   converted exactly to token base units (14.125 EUR -> 14.13 EUR -> 14_130_000 units); the VAT
   total is their difference, so excl + VAT = incl always holds. The per-rate and per-part
   figures split those rounded totals (:mod:`chargenet.core.pricing.rounding`); a clamp is booked
   as one adjustment at the session's highest VAT rate. A currency without a known minor unit
   is refused before anything is priced.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from chargenet.core.pricing.money import ZERO, frac, minor_unit
from chargenet.core.pricing.restrictions import Moment, matches
from chargenet.core.pricing.result import CostPart, PeriodResult, PriceResult
from chargenet.core.pricing.rounding import Item, round_session
from chargenet.core.pricing.tariff import (
    Price,
    PriceComponent,
    Tariff,
    TariffDimensionType,
    TaxIncluded,
)
from chargenet.core.pricing.usage import (
    Interval,
    PricingError,
    Usage,
    instant,
    seconds_between,
)

D = TariffDimensionType

#: Base units per OCPI unit: ENERGY is priced per kWh and stepped per Wh; times per hour / second.
BASE_PER_UNIT = {D.ENERGY: 1000, D.TIME: 3600, D.PARKING_TIME: 3600, D.FLAT: 1}
#: The order of cost parts in results, CDRs and invoices.
PART_ORDER = (D.FLAT, D.ENERGY, D.TIME, D.PARKING_TIME)


@dataclass(frozen=True)
class _Piece:
    interval: Interval
    active: dict[TariffDimensionType, int | None]


def price(tariff: Tariff, usage: Usage, *, time_zone: str | ZoneInfo = "UTC") -> PriceResult:
    """Price ``usage`` under ``tariff``; times of day are read in ``time_zone`` (the location's)."""
    pricer = Pricer(tariff, usage.start, time_zone=time_zone)
    for interval in usage.intervals:
        pricer.add(interval)
    return pricer.result()


class Pricer:
    """A session's price built interval by interval, in order.

    Every rule above only looks back (what was delivered and for how long before a piece, which
    elements were active), so the pieces of an interval are cut, judged and booked once, when it
    is added: a running session's price after each new meter sample costs the same whatever the
    session's length (re-pricing all samples made a ten-hour session at one sample a minute cost
    ~50 ms per sample, in each service that follows the price). :meth:`result` closes a copy.
    """

    def __init__(self, tariff: Tariff, start: datetime, *, time_zone: str | ZoneInfo = "UTC"):
        self.tariff = tariff
        self.start = start
        self.zone = ZoneInfo(time_zone) if isinstance(time_zone, str) else time_zone
        minor_unit(tariff.currency)  # an unknown currency fails here, with its code, not mid-way
        if tariff.tax_included is TaxIncluded.YES:
            raise PricingError(
                "tariffs with tax_included=YES are not supported: give prices excl. VAT"
            )
        if not tariff.is_valid_at(start):
            raise PricingError(f"tariff {tariff.id} is not in force at the session start")
        self._times_of_day = _times_of_day(tariff)
        self._duration_cuts = _duration_cuts(tariff)
        self._energy_cuts = sorted(_energy_cuts(tariff))
        self._used = _Used()
        self._delivered = ZERO
        self._ledger = _Ledger(tariff)
        self._periods: list[PeriodResult] = []
        self._flat: int | None = None

    def add(self, interval: Interval) -> None:
        """Book the next interval (it starts where the previous one ended)."""
        self._used.add(interval)
        for piece in self._cut(interval):
            self._book(piece)

    def result(self, *, then: Sequence[Interval] = ()) -> PriceResult:
        """The price so far (``then``: intervals after the last one added, not kept, such as the
        parking after a stopped session's last sample)."""
        pricer = self.copy()
        for interval in then:
            pricer.add(interval)
        return pricer._close()

    # -- 1. cutting ------------------------------------------------------------------------------

    def _cut(self, interval: Interval) -> list[_Piece]:
        """The interval split at every boundary inside it, each piece judged at its midpoint."""
        cuts = self._clock_cuts(interval) | {
            c for c in self._duration_cuts if interval.start < c < interval.end
        }
        if interval.energy_wh > 0:
            delivered = self._delivered
            for threshold in self._energy_cuts:
                if delivered < threshold < delivered + interval.energy_wh:
                    share = (threshold - delivered) / interval.energy_wh
                    cuts.add(interval.start + share * interval.seconds)
        bounds = [interval.start, *sorted(cuts), interval.end]
        pieces = []
        for low, high in itertools.pairwise(bounds):
            energy = interval.energy_wh * (high - low) / interval.seconds
            piece = Interval(
                low, high, interval.charging, energy, interval.power_kw, interval.current_a
            )
            pieces.append(self._classify(piece, self._delivered))
            self._delivered += energy
        return pieces

    def _clock_cuts(self, interval: Interval) -> set[Fraction]:
        """Each time of day a restriction names, and local midnight, inside the interval."""
        zone = self.zone
        # A day either side: a local time near a DST change may land on a neighbouring date.
        day = instant(self.start, interval.start).astimezone(zone).date() - timedelta(days=1)
        last = instant(self.start, interval.end).astimezone(zone).date() + timedelta(days=1)
        cuts: set[Fraction] = set()
        while day <= last:
            for moment in self._times_of_day:
                offset = seconds_between(self.start, datetime.combine(day, moment, tzinfo=zone))
                if interval.start < offset < interval.end:
                    cuts.add(offset)
            day += timedelta(days=1)
        return cuts

    # -- 2. which element prices each piece ------------------------------------------------------

    def _classify(self, interval: Interval, before: Fraction) -> _Piece:
        middle = (interval.start + interval.end) / 2
        moment = Moment(
            local=instant(self.start, middle).astimezone(self.zone),
            duration=middle,
            energy_wh=before + interval.energy_wh / 2,
            power_kw=interval.power_kw,
            current_a=interval.current_a,
        )
        dimensions = (D.ENERGY, D.TIME, D.FLAT) if interval.charging else (D.PARKING_TIME, D.FLAT)
        active = {d: _first_matching(self.tariff, d, moment) for d in dimensions}
        return _Piece(interval, active)

    # -- 3./4./5. periods, volumes and steps -----------------------------------------------------

    def _book(self, piece: _Piece) -> None:
        interval = piece.interval
        volumes = (
            {D.ENERGY: interval.energy_wh, D.TIME: interval.seconds}
            if interval.charging
            else {D.PARKING_TIME: interval.seconds}
        )
        for dimension, volume in volumes.items():
            element = piece.active[dimension]
            if element is None:
                self._ledger.close(dimension)
            elif volume > 0:
                self._ledger.add(dimension, element, volume)
        if self._flat is None:
            self._flat = piece.active.get(D.FLAT)
        key = tuple(sorted((d.value, e) for d, e in piece.active.items() if d is not D.FLAT))
        last = self._periods[-1] if self._periods else None
        if last is not None and last.charging == interval.charging and last.key == key:
            self._periods[-1] = last.extend(interval)
        else:
            self._periods.append(PeriodResult.start_with(interval, key))

    def copy(self) -> Pricer:
        pricer = copy.copy(self)
        pricer._used = copy.copy(self._used)
        pricer._ledger = self._ledger.copy()
        pricer._periods = list(self._periods)
        return pricer

    def _close(self) -> PriceResult:
        ledger = self._ledger
        for dimension in (D.ENERGY, D.TIME, D.PARKING_TIME):
            ledger.close(dimension)
        if self._flat is not None:
            ledger.billed[(D.FLAT, self._flat)] = Fraction(1)
            ledger.used[(D.FLAT, self._flat)] = Fraction(1)
        return _totals(self.tariff, self.start, self._used, ledger.parts(), self._periods)


@dataclass
class _Used:
    """The session's totals so far (its intervals themselves are not kept)."""

    end: Fraction = ZERO
    energy_wh: Fraction = ZERO
    charging_seconds: Fraction = ZERO
    parking_seconds: Fraction = ZERO

    def add(self, interval: Interval) -> None:
        self.end = interval.end
        self.energy_wh += interval.energy_wh
        if interval.charging:
            self.charging_seconds += interval.seconds
        else:
            self.parking_seconds += interval.seconds


def _times_of_day(tariff: Tariff) -> set[time]:
    times = {time(0, 0)}
    for element in tariff.elements:
        r = element.restrictions
        if r is not None:
            times.update(t for t in (r.start_time_of_day, r.end_time_of_day) if t is not None)
    return times


def _duration_cuts(tariff: Tariff) -> set[Fraction]:
    cuts: set[Fraction] = set()
    for element in tariff.elements:
        r = element.restrictions
        if r is not None:
            cuts.update(Fraction(d) for d in (r.min_duration, r.max_duration) if d)
    return cuts


def _energy_cuts(tariff: Tariff) -> set[Fraction]:
    cuts: set[Fraction] = set()
    for element in tariff.elements:
        r = element.restrictions
        if r is not None:
            cuts.update(frac(k) * 1000 for k in (r.min_kwh, r.max_kwh) if k)
    return cuts


def _first_matching(tariff: Tariff, dimension: TariffDimensionType, moment: Moment) -> int | None:
    for index, element in enumerate(tariff.elements):
        if element.component(dimension) is not None and matches(element.restrictions, moment):
            return index
    return None


# -- the ledger, costs and totals --------------------------------------------------------------


class _Ledger:
    """Per (dimension, element): used and billed base units; per dimension: the open step run."""

    def __init__(self, tariff: Tariff) -> None:
        self.tariff = tariff
        self.used: dict[tuple[TariffDimensionType, int], Fraction] = {}
        self.billed: dict[tuple[TariffDimensionType, int], Fraction] = {}
        self.session_billed: dict[TariffDimensionType, Fraction] = {}
        self.open_run: dict[TariffDimensionType, int] = {}

    def add(self, dimension: TariffDimensionType, element: int, volume: Fraction) -> None:
        key = (dimension, element)
        self.used[key] = self.used.get(key, ZERO) + volume
        self.billed[key] = self.billed.get(key, ZERO) + volume
        self.session_billed[dimension] = self.session_billed.get(dimension, ZERO) + volume
        self.open_run[dimension] = element

    def close(self, dimension: TariffDimensionType) -> None:
        """Round the session total up to the step of the run's last component."""
        element = self.open_run.pop(dimension, None)
        if element is None:
            return
        step = self._component(dimension, element).step_size
        total = self.session_billed[dimension]
        rounded = math.ceil(total / step) * step
        self.billed[(dimension, element)] += rounded - total
        self.session_billed[dimension] = Fraction(rounded)

    def copy(self) -> _Ledger:
        ledger = _Ledger(self.tariff)
        ledger.used = dict(self.used)
        ledger.billed = dict(self.billed)
        ledger.session_billed = dict(self.session_billed)
        ledger.open_run = dict(self.open_run)
        return ledger

    def _component(self, dimension: TariffDimensionType, element: int) -> PriceComponent:
        component = self.tariff.elements[element].component(dimension)
        assert component is not None
        return component

    def parts(self) -> list[CostPart]:
        result = []
        for (dimension, element), billed in sorted(self.billed.items(), key=_part_order):
            component = self._component(dimension, element)
            excl = frac(component.price) * billed / BASE_PER_UNIT[dimension]
            rate = frac(component.vat) / 100 if component.vat is not None else ZERO
            result.append(
                CostPart(
                    dimension=dimension,
                    element_index=element,
                    price=component.price,
                    vat_rate=component.vat,
                    step_size=component.step_size,
                    used=self.used[(dimension, element)],
                    billed=billed,
                    excl_vat=excl,
                    vat=excl * rate,
                )
            )
        return result


def _part_order(item: tuple[tuple[TariffDimensionType, int], Fraction]) -> tuple[int, int]:
    (dimension, element), _ = item
    return PART_ORDER.index(dimension), element


# -- 7./8. totals, clamps, units ----------------------------------------------------------------


def _totals(
    tariff: Tariff, start: datetime, used: _Used, parts: list[CostPart], periods: list[PeriodResult]
) -> PriceResult:
    excl = sum((p.excl_vat for p in parts), ZERO)
    incl = sum((p.incl_vat for p in parts), ZERO)
    clamped_excl, clamped_incl, applied = _clamp(tariff, excl, incl)
    rates = [p.vat_rate for p in parts if p.vat_rate is not None]
    adjustment_rate = max(rates) if rates else None
    items = [Item(p.vat_rate, p.excl_vat, p.vat) for p in parts]
    if applied is not None:
        extra_excl = clamped_excl - excl
        items.append(Item(adjustment_rate, extra_excl, clamped_incl - incl - extra_excl))
    return PriceResult(
        tariff_id=tariff.id,
        currency=tariff.currency,
        start=start,
        end=instant(start, used.end),
        parts=tuple(parts),
        periods=tuple(periods),
        energy_wh=used.energy_wh,
        charging_seconds=used.charging_seconds,
        parking_seconds=used.parking_seconds,
        components_excl_vat=excl,
        components_incl_vat=incl,
        total_excl_vat=clamped_excl,
        total_incl_vat=clamped_incl,
        price_limit=applied,
        adjustment_rate=adjustment_rate if applied is not None else None,
        rounding=round_session(tariff.currency, items, clamped_excl, clamped_incl),
    )


def _clamp(tariff: Tariff, excl: Fraction, incl: Fraction) -> tuple[Fraction, Fraction, str | None]:
    ratio = incl / excl if excl > 0 else Fraction(1)
    applied: str | None = None
    low = _bounds(tariff.min_price, ratio)
    if low is not None and (excl < low[0] or incl < low[1]):
        excl, incl, applied = max(excl, low[0]), max(incl, low[1]), "min_price"
    high = _bounds(tariff.max_price, ratio)
    if high is not None and (excl > high[0] or incl > high[1]):
        excl, incl, applied = min(excl, high[0]), min(incl, high[1]), "max_price"
    return excl, incl, applied


def _bounds(bound: Price | None, ratio: Fraction) -> tuple[Fraction, Fraction] | None:
    if bound is None:
        return None
    excl = frac(bound.excl_vat)
    incl = frac(bound.incl_vat) if bound.incl_vat is not None else excl * ratio
    return excl, incl
