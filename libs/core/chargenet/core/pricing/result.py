"""What the engine returns: exact amounts, their token units, and the charging periods."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from chargenet.core.pricing.money import ZERO, to_decimal, to_units, units_to_decimal
from chargenet.core.pricing.tariff import TariffDimensionType
from chargenet.core.pricing.usage import Interval, Range

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
        return {
            "type": self.dimension.value,
            "element_index": self.element_index,
            "price": self.price,
            "vat": self.vat_rate,
            "step_size": self.step_size,
            "volume_used": to_decimal(self.used / _BASE[self.dimension]),
            "volume_billed": to_decimal(self.volume),
            "excl_vat": to_decimal(self.excl_vat),
            "vat_amount": to_decimal(self.vat),
            "incl_vat": to_decimal(self.incl_vat),
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
    total_excl_vat_units: int  # token base units, rounded once
    total_incl_vat_units: int

    @property
    def vat_units(self) -> int:
        return self.total_incl_vat_units - self.total_excl_vat_units

    @property
    def total_excl_vat_decimal(self) -> Decimal:
        """The settled amount excl. VAT in currency, to the token's six decimals."""
        return units_to_decimal(self.total_excl_vat_units)

    @property
    def total_incl_vat_decimal(self) -> Decimal:
        return units_to_decimal(self.total_incl_vat_units)

    def dimension_cost(self, dimension: TariffDimensionType) -> tuple[Fraction, Fraction]:
        """(excl, incl) of every part of ``dimension``, exact and before clamps."""
        parts = [p for p in self.parts if p.dimension is dimension]
        return sum((p.excl_vat for p in parts), ZERO), sum((p.incl_vat for p in parts), ZERO)

    def to_json(self) -> dict[str, Any]:
        """The totals as a JSON-ready dict; exact Decimals plus integer token units."""

        def cost(dimension: TariffDimensionType) -> dict[str, Any]:
            excl, incl = self.dimension_cost(dimension)
            return _price_json(excl, incl)

        return {
            "tariff_id": self.tariff_id,
            "currency": self.currency,
            "start_date_time": self.start,
            "end_date_time": self.end,
            "total_energy": to_decimal(self.energy_wh / 1000),
            "total_time": to_decimal(self.charging_seconds / 3600),
            "total_parking_time": to_decimal(self.parking_seconds / 3600),
            "total_cost": _price_json(self.total_excl_vat, self.total_incl_vat),
            "total_fixed_cost": cost(D.FLAT),
            "total_energy_cost": cost(D.ENERGY),
            "total_time_cost": cost(D.TIME),
            "total_parking_cost": cost(D.PARKING_TIME),
            "price_limit_applied": self.price_limit,
            "cost_before_price_limit": _price_json(
                self.components_excl_vat, self.components_incl_vat
            ),
            "total_cost_units": {
                "excl_vat": self.total_excl_vat_units,
                "vat": self.vat_units,
                "incl_vat": self.total_incl_vat_units,
            },
            "cost_parts": [part.to_json() for part in self.parts],
        }


def _price_json(excl: Fraction, incl: Fraction) -> dict[str, Any]:
    return {
        "excl_vat": to_decimal(excl),
        "incl_vat": to_decimal(incl),
        "excl_vat_units": to_units(excl),
        "incl_vat_units": to_units(incl),
    }
