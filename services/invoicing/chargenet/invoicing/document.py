"""The invoice's content: all an EU VAT invoice must state, computed from the settled session.

Figures come from re-pricing the session's CDR under its tariff with the core engine (the same
code the escrow settled with); an invoice is refused when the result differs from the amount
settled on chain, because the invoice total must be what the driver paid.

Amounts are integers in token base units (6 decimals of the currency). Line nets and VAT per rate
are allocated from the engine's exact values by largest remainder, so the lines add up exactly to
the totals that were rounded once. A min/max price clamp appears as a document-level charge or
allowance; with several VAT rates it is booked at the highest one (a simplification: OCPI does not
say how a clamp splits across rates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field

from chargenet.core.pricing import (
    Cdr,
    CostPart,
    PriceResult,
    PricingError,
    Tariff,
    TariffDimensionType,
    price_cdr,
)
from chargenet.core.pricing.money import (
    TOKEN_SCALE,
    round_half_up,
    to_decimal,
    units_to_decimal,
)
from chargenet.invoicing.events import SessionSettled

D = TariffDimensionType


class InvoiceError(ValueError):
    """No invoice can be issued for this settlement; the message says why."""


class Party(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    street: str | None = None
    postcode: str | None = None
    city: str | None = None
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    vat_id: str | None = None
    email: str | None = None


class InvoiceLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    line: int
    description: str
    quantity: Decimal
    unit: str  # shown to people: kWh, min, session
    unit_code: str  # UN/ECE rec 20: KWH, MIN, C62
    unit_price: Decimal  # excl. VAT, per unit
    vat_rate: Decimal | None
    vat_category: str  # S standard, Z zero rated, O outside the scope of VAT
    net: int  # token base units


class Adjustment(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: str
    charge: bool  # True: a charge (min_price); False: an allowance (max_price)
    amount: int  # positive, token base units
    vat_rate: Decimal | None
    vat_category: str


class VatSubtotal(BaseModel):
    model_config = ConfigDict(frozen=True)

    vat_category: str
    vat_rate: Decimal | None
    basis: int
    vat: int


class InvoiceDocument(BaseModel):
    """The immutable invoice as stored and served as JSON; the PDF and XML render from it."""

    model_config = ConfigDict(frozen=True)

    number: str
    sequence: int
    issue_date: date
    supply_start: datetime
    supply_end: datetime
    currency: str
    supplier: Party
    customer: Party
    cpo_id: str
    driver_id: str
    session_id: str
    station_id: str
    evse_id: str | None
    cdr_id: str
    cdr_hash: str
    tariff_id: str
    settlement_tx_hash: str
    lines: list[InvoiceLine]
    adjustments: list[Adjustment]
    vat_subtotals: list[VatSubtotal]
    total_excl_vat: int
    total_vat: int
    total_incl_vat: int
    amount_locked: int
    energy_kwh: Decimal
    charging_minutes: Decimal
    parking_minutes: Decimal
    meter_verified: bool
    meter_data_url: str
    signed_meter_data: list[str]

    @property
    def supply_date(self) -> date:
        return self.supply_end.astimezone(UTC).date()


def money(units: int) -> Decimal:
    """Token units as currency: two decimals when exact at cents, else up to six."""
    value = units_to_decimal(units)
    cents = value.quantize(Decimal("0.01"))
    return cents if cents == value else value.normalize()


def build_document(
    settled: SessionSettled,
    *,
    number: str,
    sequence: int,
    issue_date: date,
    supplier: Party,
    customer: Party,
    meter_data_url: str,
) -> InvoiceDocument:
    try:
        tariff = Tariff.model_validate(settled.tariff)
        cdr = Cdr.model_validate(settled.cdr)
        result = price_cdr(tariff, cdr)
    except (ValueError, PricingError) as error:
        raise InvoiceError(
            f"the settled session's tariff or CDR cannot be priced: {error}"
        ) from None
    if result.total_incl_vat_units != settled.amount_settled:
        raise InvoiceError(
            f"the CDR prices to {result.total_incl_vat_units} units incl. VAT but "
            f"{settled.amount_settled} were settled"
        )
    lines = [_line(n, part) for n, part in enumerate(result.parts, 1)]
    adjustment = _adjustment(result)
    nets = _allocate(
        [p.excl_vat for p in result.parts]
        + ([result.total_excl_vat - result.components_excl_vat] if adjustment else []),
        result.total_excl_vat_units,
    )
    lines = [line.model_copy(update={"net": net}) for line, net in zip(lines, nets, strict=False)]
    adjustments = []
    if adjustment is not None:
        adjustments = [adjustment.model_copy(update={"amount": abs(nets[-1])})]
    return InvoiceDocument(
        number=number,
        sequence=sequence,
        issue_date=issue_date,
        supply_start=cdr.start_date_time,
        supply_end=cdr.end_date_time,
        currency=tariff.currency,
        supplier=supplier,
        customer=customer,
        cpo_id=settled.cpo_id,
        driver_id=settled.driver_id,
        session_id=settled.session_id,
        station_id=settled.station_id,
        evse_id=settled.evse_id or cdr.cdr_location.evse_id,
        cdr_id=cdr.id,
        cdr_hash=settled.cdr_hash,
        tariff_id=tariff.id,
        settlement_tx_hash=settled.settlement_tx_hash,
        lines=lines,
        adjustments=adjustments,
        vat_subtotals=_vat_subtotals(result, lines, adjustments),
        total_excl_vat=result.total_excl_vat_units,
        total_vat=result.vat_units,
        total_incl_vat=result.total_incl_vat_units,
        amount_locked=settled.amount_locked,
        energy_kwh=_places(result.energy_wh / 1000, 3),
        charging_minutes=_places(result.charging_seconds / 60, 2),
        parking_minutes=_places(result.parking_seconds / 60, 2),
        meter_verified=settled.meter_verified,
        meter_data_url=meter_data_url.replace("{session_id}", settled.session_id),
        signed_meter_data=list(settled.signed_meter_data),
    )


_DESCRIPTIONS = {
    D.FLAT: ("Session fee", "session", "C62"),
    D.ENERGY: ("Energy", "kWh", "KWH"),
    D.TIME: ("Charging time", "min", "MIN"),
    D.PARKING_TIME: ("Parking time", "min", "MIN"),
}


def _line(number: int, part: CostPart) -> InvoiceLine:
    description, unit, code = _DESCRIPTIONS[part.dimension]
    if part.dimension in (D.TIME, D.PARKING_TIME):
        quantity = _places(part.billed / 60, 6)
        unit_price = _places(Fraction(part.price) / 60, 6)
    else:
        quantity = to_decimal(part.volume)
        unit_price = part.price
    return InvoiceLine(
        line=number,
        description=description,
        quantity=quantity,
        unit=unit,
        unit_code=code,
        unit_price=unit_price,
        vat_rate=part.vat_rate,
        vat_category=_category(part.vat_rate),
        net=0,
    )


def _adjustment(result: PriceResult) -> Adjustment | None:
    if result.price_limit is None:
        return None
    rates = [p.vat_rate for p in result.parts if p.vat_rate is not None]
    rate = max(rates) if rates else None
    charge = result.price_limit == "min_price"
    reason = "Minimum session price" if charge else "Maximum session price"
    return Adjustment(
        reason=reason, charge=charge, amount=0, vat_rate=rate, vat_category=_category(rate)
    )


def _vat_subtotals(
    result: PriceResult, lines: list[InvoiceLine], adjustments: list[Adjustment]
) -> list[VatSubtotal]:
    groups: dict[tuple[str, Decimal | None], tuple[int, Fraction]] = {}
    for line, part in zip(lines, result.parts, strict=True):
        key = (line.vat_category, line.vat_rate)
        basis, vat = groups.get(key, (0, Fraction(0)))
        groups[key] = (basis + line.net, vat + part.vat)
    for adjustment in adjustments:
        key = (adjustment.vat_category, adjustment.vat_rate)
        basis, vat = groups.get(key, (0, Fraction(0)))
        signed = adjustment.amount if adjustment.charge else -adjustment.amount
        clamp_vat = (result.total_incl_vat - result.components_incl_vat) - (
            result.total_excl_vat - result.components_excl_vat
        )
        groups[key] = (basis + signed, vat + clamp_vat)
    keys = sorted(groups, key=lambda k: (k[0], k[1] or Decimal(-1)))
    vats = _allocate([groups[k][1] for k in keys], result.vat_units)
    return [
        VatSubtotal(vat_category=k[0], vat_rate=k[1], basis=groups[k][0], vat=v)
        for k, v in zip(keys, vats, strict=True)
    ]


def _category(rate: Decimal | None) -> str:
    if rate is None:
        return "O"
    return "Z" if rate == 0 else "S"


def _allocate(exact: Sequence[Fraction], total: int) -> list[int]:
    """Integer units per item summing to ``total``, each within one unit of its exact value."""
    scaled = [value * TOKEN_SCALE for value in exact]
    units = [math.floor(value) for value in scaled]
    difference = total - sum(units)
    if abs(difference) > len(units):
        raise InvoiceError(f"cannot allocate {total} units over {len(units)} items")
    order = sorted(range(len(units)), key=lambda i: scaled[i] - units[i], reverse=True)
    if difference >= 0:
        for index in order[:difference]:
            units[index] += 1
    else:
        for index in order[difference:]:
            units[index] -= 1
    return units


def _places(value: Fraction, places: int) -> Decimal:
    return round_half_up(to_decimal(value), places)
