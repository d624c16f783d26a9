"""A station's OCPI tariff as a driver reads it before starting: price per kWh, per minute, per
session, in that order (AFIR, Regulation (EU) 2023/1804, Art. 5), VAT included.

OCPI applies the first element whose restrictions match, per dimension; the headline shows each
dimension's first component and says when restrictions (time of day, power, ...) change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from chargenet.core.pricing import Tariff
from chargenet.core.pricing.money import plain, round_half_up
from chargenet.core.pricing.tariff import TariffDimensionType

D = TariffDimensionType
#: (dimension, unit shown, divisor from OCPI's unit to the unit shown): OCPI prices TIME and
#: PARKING_TIME per hour; AFIR asks for a price per minute.
_ORDER: tuple[tuple[TariffDimensionType, str, int], ...] = (
    (D.ENERGY, "per kWh", 1),
    (D.TIME, "per minute", 60),
    (D.FLAT, "per session", 1),
    (D.PARKING_TIME, "per minute parked", 60),
)
_LABELS = {
    D.ENERGY: "Energy",
    D.TIME: "Charging time",
    D.FLAT: "Session fee",
    D.PARKING_TIME: "Parking",
}


@dataclass(frozen=True)
class PriceLine:
    label: str
    price: str  # incl. VAT, in the currency, plain decimals
    unit: str
    vat: str | None  # the VAT rate in percent, None when the tariff states none


@dataclass(frozen=True)
class TariffView:
    currency: str
    lines: tuple[PriceLine, ...]
    conditional: bool  # some element has restrictions: prices may differ by time, power, ...
    min_price: str | None
    max_price: str | None
    note: str | None  # the CPO's alternative text, when it gives one


def _shown(value: Decimal) -> str:
    # At least the cents, at most four places: a per-minute price like 0.0083 stays readable.
    return plain(round_half_up(value, 4)) if value != round_half_up(value, 2) else f"{value:.2f}"


def tariff_view(document: dict[str, Any] | None) -> TariffView | None:
    """The headline prices, or None when the station has no (valid) tariff document."""
    if document is None:
        return None
    try:
        tariff = Tariff.model_validate(document)
    except ValidationError:
        return None
    first: dict[TariffDimensionType, tuple[Decimal, Decimal | None]] = {}
    for element in tariff.elements:
        for component in element.price_components:
            first.setdefault(component.type, (Decimal(component.price), component.vat))
    lines = []
    for dimension, unit, divisor in _ORDER:
        if dimension not in first:
            continue
        price, vat = first[dimension]
        gross = price * (1 + (Decimal(vat) if vat is not None else Decimal(0)) / 100) / divisor
        lines.append(
            PriceLine(
                label=_LABELS[dimension],
                price=_shown(gross),
                unit=unit,
                vat=plain(Decimal(vat)) if vat is not None else None,
            )
        )
    note = next((t.text for t in tariff.tariff_alt_text if t.language.startswith("en")), None)
    return TariffView(
        currency=tariff.currency,
        lines=tuple(lines),
        conditional=any(e.restrictions is not None for e in tariff.elements),
        min_price=_shown(Decimal(tariff.min_price.incl_vat))
        if tariff.min_price is not None and tariff.min_price.incl_vat is not None
        else None,
        max_price=_shown(Decimal(tariff.max_price.incl_vat))
        if tariff.max_price is not None and tariff.max_price.incl_vat is not None
        else None,
        note=note,
    )
