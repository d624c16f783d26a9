"""What happened in a session, in the one form the engine prices: a list of usage intervals.

Two sources build it: the meter samples of a running or finished session (the escrow's budget
check and settlement), and the charging periods of an OCPI CDR (anyone re-checking a price).

An interval is either charging (energy flowed) or parking (the car is connected, nothing flows).
Offsets are exact rational seconds since the session start, so splitting an interval at a tariff
boundary never rounds.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from chargenet.core.pricing.money import ZERO, frac
from chargenet.core.pricing.money import PricingError as PricingError  # re-exported: its old home


class MeterSample(BaseModel):
    """One meter reading: the cumulative imported energy register at a moment.

    ``power_kw`` and ``current_a`` (sum over phases), when the charger reports them, are the values
    in force from this sample until the next; without them the interval's average power is used and
    current restrictions do not match (nothing proves the current).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    timestamp: AwareDatetime
    energy_wh: Decimal = Field(ge=0, allow_inf_nan=False)
    power_kw: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)
    current_a: Decimal | None = Field(default=None, ge=0, allow_inf_nan=False)


def meter_sample(measured_at: datetime, energy_wh: int, power_w: int | None) -> MeterSample:
    """A reading as the services store it (integer Wh and W; a naive time is UTC, as SQLite
    gives it back) as the engine's sample."""
    return MeterSample(
        timestamp=measured_at if measured_at.tzinfo else measured_at.replace(tzinfo=UTC),
        energy_wh=Decimal(energy_wh),
        power_kw=Decimal(power_w) / 1000 if power_w is not None else None,
    )


@dataclass(frozen=True)
class Range:
    """The lowest and highest value seen over an interval (power in kW, current in A)."""

    low: Fraction
    high: Fraction

    @staticmethod
    def of(value: Fraction) -> Range:
        return Range(value, value)

    def union(self, other: Range) -> Range:
        return Range(min(self.low, other.low), max(self.high, other.high))


@dataclass(frozen=True)
class Interval:
    start: Fraction  # seconds since the session start
    end: Fraction
    charging: bool
    energy_wh: Fraction
    power_kw: Range | None
    current_a: Range | None

    @property
    def seconds(self) -> Fraction:
        return self.end - self.start


@dataclass(frozen=True)
class Usage:
    start: datetime
    intervals: tuple[Interval, ...]

    @property
    def end_offset(self) -> Fraction:
        return self.intervals[-1].end if self.intervals else ZERO

    @property
    def end(self) -> datetime:
        return self.at(self.end_offset)

    def at(self, offset: Fraction) -> datetime:
        return instant(self.start, offset)


def instant(start: datetime, offset: Fraction) -> datetime:
    """The instant ``offset`` seconds after ``start`` (to the microsecond)."""
    return start + timedelta(microseconds=round(offset * 1_000_000))


def seconds_between(start: datetime, end: datetime) -> Fraction:
    delta = end - start
    return Fraction(delta // timedelta(microseconds=1), 1_000_000)


def usage_from_samples(samples: Sequence[MeterSample], *, end: datetime | None = None) -> Usage:
    """Intervals between consecutive moments; ``end`` after the last sample adds parking time.

    An interval is charging when the register advanced, parking when it did not. Samples of one
    moment are one reading (:func:`same_moment`).
    """
    if not samples:
        raise PricingError("no meter samples: at least one reading is needed")
    start = samples[0].timestamp
    readings: list[tuple[int, MeterSample]] = []
    for index, sample in enumerate(samples):
        if readings and sample.timestamp == readings[-1][1].timestamp:
            readings[-1] = (index, same_moment(readings[-1][1], sample))
        else:
            readings.append((index, sample))
    intervals: list[Interval] = []
    for (_, before), (index, after) in itertools.pairwise(readings):
        interval = between_samples(start, before, after, index=index)
        if interval is not None:
            intervals.append(interval)
    tail = parking_after(start, readings[-1][1], end)
    if tail is not None:
        intervals.append(tail)
    return Usage(start=start, intervals=tuple(intervals))


def same_moment(held: MeterSample, sample: MeterSample) -> MeterSample:
    """The one reading priced for a moment that has two.

    Chargers report one moment more than once: an OCPP 1.6 charger's last MeterValues and its
    StopTransaction carry the same second, one often in kWh and the other in Wh, so their
    registers differ by the coarser one's precision. Refusing them left the session unpriced
    (the CPO paid nothing for the energy). The highest register wins: the meter had reached it by
    then, so what is priced never goes back below a reading of that moment already booked or
    shown to the driver, and the choice does not depend on the order a store returns equal
    timestamps in. A StopTransaction has no power or current: the other reading's stay.
    """
    winner, other = (sample, held) if sample.energy_wh > held.energy_wh else (held, sample)
    power = winner.power_kw if winner.power_kw is not None else other.power_kw
    current = winner.current_a if winner.current_a is not None else other.current_a
    if (power, current) == (winner.power_kw, winner.current_a):
        return winner
    return winner.model_copy(update={"power_kw": power, "current_a": current})


def between_samples(
    start: datetime, before: MeterSample, after: MeterSample, *, index: int
) -> Interval | None:
    """The interval from ``before`` to ``after`` (sample number ``index``), None if no time
    passed; a reading that goes back in time or energy is refused. Two readings of one moment
    are first made one (:func:`same_moment`): energy cannot flow in no time."""
    seconds = seconds_between(before.timestamp, after.timestamp)
    energy = frac(after.energy_wh) - frac(before.energy_wh)
    if seconds < 0:
        raise PricingError(f"meter sample {index} is earlier than the sample before it")
    if energy < 0:
        raise PricingError(f"meter sample {index}: the energy register went backwards")
    if seconds == 0:
        if energy > 0:
            raise PricingError(f"meter sample {index}: energy without elapsed time")
        return None
    return _sample_interval(before, seconds_between(start, before.timestamp), seconds, energy)


def parking_after(start: datetime, last: MeterSample, end: datetime | None) -> Interval | None:
    """The parked time from the last sample to the session's ``end``, if any."""
    if end is None:
        return None
    if end < last.timestamp:
        raise PricingError("the session end is before its last meter sample")
    if end == last.timestamp:
        return None
    offset = seconds_between(start, last.timestamp)
    return Interval(
        offset,
        offset + seconds_between(last.timestamp, end),
        False,
        ZERO,
        Range.of(ZERO),
        Range.of(ZERO),
    )


def _sample_interval(
    before: MeterSample, offset: Fraction, seconds: Fraction, energy: Fraction
) -> Interval:
    charging = energy > 0
    if not charging:
        return Interval(offset, offset + seconds, False, ZERO, Range.of(ZERO), Range.of(ZERO))
    if before.power_kw is not None:
        power = frac(before.power_kw)
    else:
        power = energy * Fraction(36, 10) / seconds  # Wh per second -> kW
    current = Range.of(frac(before.current_a)) if before.current_a is not None else None
    return Interval(offset, offset + seconds, True, energy, Range.of(power), current)
