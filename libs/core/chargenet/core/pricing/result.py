"""What the engine returns: exact amounts, the same rounded once, and the charging periods."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from chargenet.core.pricing.money import ZERO, minor_unit, to_decimal, units_to_amount
from chargenet.core.pricing.rounding import NOTHING, Rounded, Rounding, VatRate
from chargenet.core.pricing.tariff import TariffDimensionType
from chargenet.core.pricing.usage import Interval, Range, seconds_between

D = TariffDimensionType
_BASE = {D.ENERGY: 1000, D.TIME: 3600, D.PARKING_TIME: 3600, D.FLAT: 1}


@dataclass(frozen=True)
class CostPart:
    """One component's share: its billed volume (base units: Wh, s, or 1 for FLAT) and cost."""

    dimension: TariffDimensionType
    element_index: int
    price: Decimal
    vat_rate: Decimal | None
    step_size: int
    used: Fraction
    billed: Fraction
    excl_vat: Fraction
    vat: Fraction

    @property
    def incl_vat(self) -> Fraction:
        return self.excl_vat + self.vat

    @property
    def volume(self) -> Fraction:
        """The billed volume in the OCPI unit of the dimension (kWh, hours, 1)."""
        return self.billed / _BASE[self.dimension]

    def to_json(self) -> dict[str, Any]:
        """What the part is; its amounts are added by :meth:`PriceResult.to_json`."""
        return {
            "type": self.dimension.value,
            "element_index": self.element_index,
            "price": self.price,
            "vat": self.vat_rate,
            "step_size": self.step_size,
            "volume_used": to_decimal(self.used / _BASE[self.dimension]),
            "volume_billed": to_decimal(self.volume),
        }


@dataclass(frozen=True)
class PeriodResult:
    """A charging period: consecutive pieces with one charging state and one set of elements."""

    start: Fraction
    end: Fraction
    charging: bool
    key: tuple[tuple[str, int | None], ...]
    energy_wh: Fraction
    power_kw: Range | None
    current_a: Range | None

    @staticmethod
    def start_with(interval: Interval, key: tuple[tuple[str, int | None], ...]) -> PeriodResult:
        return PeriodResult(
            interval.start,
            interval.end,
            interval.charging,
            key,
            interval.energy_wh,
            interval.power_kw,
            interval.current_a,
        )

    def extend(self, interval: Interval) -> PeriodResult:
        return replace(
            self,
            end=interval.end,
            energy_wh=self.energy_wh + interval.energy_wh,
            power_kw=_union(self.power_kw, interval.power_kw),
            current_a=_union(self.current_a, interval.current_a),
        )

    @property
    def seconds(self) -> Fraction:
        return self.end - self.start


def _union(a: Range | None, b: Range | None) -> Range | None:
    if a is None or b is None:
        # An unknown value in part of the period makes the period's range unknown.
        return None
    return a.union(b)


@dataclass(frozen=True)
class PriceResult:
    """The priced session: exact amounts, and the same amounts rounded once (``rounding``).

    The ``*_units`` values are token base units of amounts rounded to the currency's minor unit
    (see :mod:`chargenet.core.pricing.rounding`); ``total_incl_vat_units`` is what is settled.
    """

    tariff_id: str
    currency: str
    start: datetime
    end: datetime
    parts: tuple[CostPart, ...]
    periods: tuple[PeriodResult, ...]
    energy_wh: Fraction
    charging_seconds: Fraction
    parking_seconds: Fraction
    components_excl_vat: Fraction  # before min/max clamps
    components_incl_vat: Fraction
    total_excl_vat: Fraction  # exact, after clamps
    total_incl_vat: Fraction
    price_limit: str | None  # "min_price" / "max_price" when a clamp applied
    adjustment_rate: Decimal | None  # the VAT rate the clamp is booked at
    rounding: Rounding  # items: one per part, then the clamp adjustment when there is one

    @property
    def session_seconds(self) -> Fraction:
        """The whole session, start to end, charging and parked: OCPI's CDR ``total_time``
        (``total_parking_time`` is the parked part of it, ``charging_seconds`` the rest)."""
        return seconds_between(self.start, self.end)

    @property
    def total_excl_vat_units(self) -> int:
        """Token base units of the total excl. VAT, rounded once to the currency's minor unit."""
        return self.rounding.total.excl_vat_units

    @property
    def total_incl_vat_units(self) -> int:
        """The settled amount: the total incl. VAT rounded once, in token base units."""
        return self.rounding.total.incl_vat_units

    @property
    def vat_units(self) -> int:
        return self.rounding.total.vat_units

    @property
    def total_excl_vat_decimal(self) -> Decimal:
        """The total excl. VAT in currency, with the currency's decimals (``12.50``)."""
        return units_to_amount(self.total_excl_vat_units, self.currency)

    @property
    def total_incl_vat_decimal(self) -> Decimal:
        return units_to_amount(self.total_incl_vat_units, self.currency)

    @property
    def part_amounts(self) -> tuple[Rounded, ...]:
        """Each part's rounded share of the totals, in the order of ``parts``."""
        return self.rounding.items[: len(self.parts)]

    @property
    def adjustment(self) -> Rounded | None:
        """The min/max clamp's rounded share (negative for a ``max_price`` allowance)."""
        return self.rounding.items[len(self.parts)] if self.price_limit is not None else None

    def dimension_cost(self, dimension: TariffDimensionType) -> tuple[Fraction, Fraction]:
        """(excl, incl) of every part of ``dimension``, exact and before clamps."""
        parts = [p for p in self.parts if p.dimension is dimension]
        return sum((p.excl_vat for p in parts), ZERO), sum((p.incl_vat for p in parts), ZERO)

    def dimension_amounts(self, dimension: TariffDimensionType) -> Rounded:
        """The rounded shares of every part of ``dimension``, added up (before clamps)."""
        shares = zip(self.parts, self.part_amounts, strict=True)
        return sum((a for p, a in shares if p.dimension is dimension), NOTHING)

    def to_json(self) -> dict[str, Any]:
        """The totals as a JSON-ready dict: rounded amounts (as settled), exact ones, units."""

        def cost(dimension: TariffDimensionType) -> dict[str, Any]:
            return self._price_json(
                self.dimension_amounts(dimension), *self.dimension_cost(dimension)
            )

        before = sum(self.part_amounts, NOTHING)
        return {
            "tariff_id": self.tariff_id,
            "currency": self.currency,
            "currency_decimals": minor_unit(self.currency),
            "start_date_time": self.start,
            "end_date_time": self.end,
            "total_energy": to_decimal(self.energy_wh / 1000),
            "total_time": to_decimal(self.session_seconds / 3600),
            "total_parking_time": to_decimal(self.parking_seconds / 3600),
            "total_cost": self._price_json(
                self.rounding.total, self.total_excl_vat, self.total_incl_vat
            ),
            "total_fixed_cost": cost(D.FLAT),
            "total_energy_cost": cost(D.ENERGY),
            "total_time_cost": cost(D.TIME),
            "total_parking_cost": cost(D.PARKING_TIME),
            "price_limit_applied": self.price_limit,
            "cost_before_price_limit": self._price_json(
                before, self.components_excl_vat, self.components_incl_vat
            ),
            "total_cost_units": {
                "excl_vat": self.total_excl_vat_units,
                "vat": self.vat_units,
                "incl_vat": self.total_incl_vat_units,
            },
            "vat_breakdown": [self._rate_json(rate) for rate in self.rounding.vat_rates],
            "cost_parts": [
                part.to_json() | self._price_json(amounts, part.excl_vat, part.incl_vat)
                for part, amounts in zip(self.parts, self.part_amounts, strict=True)
            ],
        }

    def _price_json(self, amounts: Rounded, excl: Fraction, incl: Fraction) -> dict[str, Any]:
        return {
            "excl_vat": units_to_amount(amounts.excl_vat_units, self.currency),
            "incl_vat": units_to_amount(amounts.incl_vat_units, self.currency),
            "excl_vat_units": amounts.excl_vat_units,
            "incl_vat_units": amounts.incl_vat_units,
            "exact_excl_vat": to_decimal(excl),
            "exact_incl_vat": to_decimal(incl),
        }

    def _rate_json(self, rate: VatRate) -> dict[str, Any]:
        return {
            "vat": rate.rate,
            "excl_vat": units_to_amount(rate.amounts.excl_vat_units, self.currency),
            "vat_amount": units_to_amount(rate.amounts.vat_units, self.currency),
            "incl_vat": units_to_amount(rate.amounts.incl_vat_units, self.currency),
            "exact_excl_vat": to_decimal(rate.exact_excl_vat),
            "exact_vat_amount": to_decimal(rate.exact_vat),
        }
