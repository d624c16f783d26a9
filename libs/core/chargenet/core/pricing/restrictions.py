"""When a tariff element applies: OCPI TariffRestrictions evaluated against one moment of a session.

Bounds: every lower bound is inclusive and every upper bound exclusive (``min_kwh <= kWh <
max_kwh``, the same for current, power and duration, ``start_date <= day < end_date``,
``start_time <= time < end_time``). OCPI states this for dates and durations; using one rule for
all keeps adjacent elements (``max_power: 16`` then ``min_power: 16``) from overlapping or
leaving a gap.

- A time window whose ``end_time`` is before its ``start_time`` crosses midnight (22:00-06:00);
  equal start and end mean the whole day.
- Current and power restrictions compare the lowest value seen in the interval with ``min_*`` and
  the highest with ``max_*``; an interval whose current is unknown matches no current restriction.
- Elements with a ``reservation`` restriction price reservations, which chargenet does not sell:
  they never match a charging session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from fractions import Fraction

from chargenet.core.pricing.money import frac
from chargenet.core.pricing.tariff import DayOfWeek, TariffRestrictions
from chargenet.core.pricing.usage import Range


@dataclass(frozen=True)
class Moment:
    """The session's state at one instant (the midpoint of an interval that no boundary cuts)."""

    local: datetime  # wall-clock time at the location
    duration: Fraction  # seconds since the session start
    energy_wh: Fraction  # energy delivered so far
    power_kw: Range | None
    current_a: Range | None


def matches(restrictions: TariffRestrictions | None, moment: Moment) -> bool:
    if restrictions is None:
        return True
    r = restrictions
    return (
        r.reservation is None
        and _time_of_day(r.start_time_of_day, r.end_time_of_day, moment.local.time())
        and _dates(r.start_date, r.end_date, moment.local.date())
        and (not r.day_of_week or DayOfWeek.of(moment.local.date()) in r.day_of_week)
        and _within(moment.energy_wh / 1000, r.min_kwh, r.max_kwh)
        and _within(moment.duration, r.min_duration, r.max_duration)
        and _range_within(moment.power_kw, r.min_power, r.max_power)
        and _range_within(moment.current_a, r.min_current, r.max_current)
    )


def _time_of_day(start: time | None, end: time | None, now: time) -> bool:
    if start is not None and end is not None:
        if start < end:
            return start <= now < end
        if start > end:  # crosses midnight
            return now >= start or now < end
        return True
    if start is not None:
        return now >= start
    if end is not None:
        return now < end
    return True


def _dates(start: str | None, end: str | None, today: date) -> bool:
    if start is not None and today < date.fromisoformat(start):
        return False
    return end is None or today < date.fromisoformat(end)


Bound = Decimal | int | None


def _within(value: Fraction, low: Bound, high: Bound) -> bool:
    if low is not None and value < frac(low):
        return False
    return high is None or value < frac(high)


def _range_within(value: Range | None, low: Bound, high: Bound) -> bool:
    if low is None and high is None:
        return True
    if value is None:
        return False
    if low is not None and value.low < frac(low):
        return False
    return high is None or value.high < frac(high)
