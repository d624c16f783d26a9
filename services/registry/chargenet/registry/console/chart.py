"""Settled revenue per day as an inline SVG bar chart (no script, no chart library).

Amounts are token base units (integers) summed per invoice issue date; the chart shows the last
``days`` days including those without revenue, so gaps are visible as gaps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

WIDTH = 720
HEIGHT = 260
LEFT = 70
BOTTOM = 40
TOP = 20


@dataclass(frozen=True)
class Bar:
    day: date
    units: int
    x: float
    y: float
    width: float
    height: float
    label: str  # the day as shown under the bar (every few days)


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    ticks: tuple[tuple[float, int], ...]  # (y, amount in base units) for the value axis
    total: int
    baseline: float


def per_day(invoices: Iterable[tuple[date, int]]) -> dict[date, int]:
    totals: dict[date, int] = {}
    for day, units in invoices:
        totals[day] = totals.get(day, 0) + units
    return totals


def _nice_top(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= value:
            return factor * magnitude
    return 10 * magnitude


def revenue_chart(totals: dict[date, int], today: date, days: int = 14) -> Chart:
    first = today - timedelta(days=days - 1)
    series = [
        (first + timedelta(days=n), totals.get(first + timedelta(days=n), 0)) for n in range(days)
    ]
    top = _nice_top(max(units for _, units in series))
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - TOP - BOTTOM
    slot = plot_w / days
    baseline = TOP + plot_h
    bars = []
    for index, (day, units) in enumerate(series):
        height = plot_h * units / top
        bars.append(
            Bar(
                day=day,
                units=units,
                x=round(LEFT + index * slot + slot * 0.15, 1),
                y=round(baseline - height, 1),
                width=round(slot * 0.7, 1),
                height=round(height, 1),
                label=day.strftime("%d %b") if index % 2 == (days - 1) % 2 else "",
            )
        )
    ticks = tuple((round(baseline - plot_h * step / 4, 1), top * step // 4) for step in range(5))
    return Chart(WIDTH, HEIGHT, tuple(bars), ticks, sum(u for _, u in series), baseline)
