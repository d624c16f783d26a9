"""The invoice's content: all an EU VAT invoice must state, computed from the settled session.

Figures come from re-pricing the session's CDR under its tariff with the core engine (the same
code the escrow settled with); an invoice is refused when the result differs from the amount
settled on chain, because the invoice total must be what the driver paid.

Amounts are integers in token base units (6 decimals), always whole minor units of the currency
(cents for EUR): the engine rounds the session's totals once to the minor unit and splits them
per VAT rate and per cost part (:mod:`chargenet.core.pricing.rounding`). The invoice takes those
figures as they are, so line nets, the min/max clamp (a document-level charge or allowance, booked
at the session's highest VAT rate) and the VAT breakdown add up exactly to the totals, and the
total incl. VAT is the amount settled on chain. :func:`check_sums` re-checks the EN 16931 sum
rules before an invoice is issued.

A late budget stop settles the locked maximum below the price (``price_before_cap`` on the
event): the invoice then lists what was supplied at the tariff's prices and books the cut as an
allowance, like a tariff's ``max_price``, so its total incl. VAT is still the amount settled. Any
other difference between the price and the settlement is refused.

EN 16931 allows at most two decimals in an amount (BR-DEC-*), so a currency with three (KWD, BHD)
cannot be invoiced in this format and is refused with that reason.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

from pydantic import BaseModel, ConfigDict, Field

from chargenet.core.pricing import (
    Cdr,
    CostPart,
    PriceResult,
    PricingError,
    Rounded,
    Tariff,
    TariffDimensionType,
    price_cdr,
)
from chargenet.core.pricing.cap import capped
from chargenet.core.pricing.money import (
    minor_unit,
    round_half_up,
    to_decimal,
    units_per_minor,
    units_to_amount,
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
    vat_category: str  # S standard, Z zero rated, O / E no VAT (see _category)
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


#: EN 16931 BR-DEC-*: at most two decimals in every amount.
EN16931_MAX_DECIMALS = 2


def money(units: int, currency: str) -> Decimal:
    """Token units as an amount with the currency's decimals (``14.13``).

    A document stored before amounts were rounded to the minor unit shows its six decimals.
    """
    if units % units_per_minor(currency):
        return units_to_decimal(units)
    return units_to_amount(units, currency)


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
    result = _as_settled(result, settled, cdr)
    _check_parties(supplier, customer, result)
    if minor_unit(result.currency) > EN16931_MAX_DECIMALS:
        raise InvoiceError(
            f"{result.currency} amounts have {minor_unit(result.currency)} decimals but an "
            f"EN 16931 invoice allows at most {EN16931_MAX_DECIMALS} (BR-DEC)"
        )
    # "O" only where EN 16931 allows it: nothing taxed and no seller VAT id (BR-O-02, -11..14)
    outside = supplier.vat_id is None and all(r.rate is None for r in result.rounding.vat_rates)
    lines = [_line(n, part, a, outside) for n, (part, a) in enumerate(_shares(result), 1)]
    adjustments = _adjustments(result, outside)
    document = InvoiceDocument(
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
        vat_subtotals=[
            VatSubtotal(
                vat_category=_category(rate.rate, outside),
                vat_rate=rate.rate,
                basis=rate.amounts.excl_vat_units,
                vat=rate.amounts.vat_units,
            )
            for rate in result.rounding.vat_rates
        ],
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
    check_sums(document)
    return document


def _check_parties(supplier: Party, customer: Party, result: PriceResult) -> None:
    """The parties' rules a settlement's data decides: addresses with a country, and VAT only
    from a seller with a VAT identifier."""
    if supplier.country is None:
        raise InvoiceError(f"the seller {supplier.name!r} has no country code (BR-09)")
    if customer.country is None:
        raise InvoiceError(f"the buyer {customer.name!r} has no country code (BR-11)")
    taxed = sorted({str(r.rate) for r in result.rounding.vat_rates if r.rate is not None})
    if supplier.vat_id is None and taxed:
        raise InvoiceError(
            f"the seller {supplier.name!r} is not VAT-registered (no VAT id) but the tariff "
            f"charges VAT at {', '.join(taxed)} %: an invoice with VAT needs the seller's VAT "
            "identifier (BR-S-02, BR-Z-02)"
        )


_DESCRIPTIONS = {
    D.FLAT: ("Session fee", "session", "C62"),
    D.ENERGY: ("Energy", "kWh", "KWH"),
    D.TIME: ("Charging time", "min", "MIN"),
    D.PARKING_TIME: ("Parking time", "min", "MIN"),
}


def _shares(result: PriceResult) -> list[tuple[CostPart, Rounded]]:
    return list(zip(result.parts, result.part_amounts, strict=True))


def _line(number: int, part: CostPart, amounts: Rounded, outside: bool) -> InvoiceLine:
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
        vat_category=_category(part.vat_rate, outside),
        net=amounts.excl_vat_units,
    )


#: ``price_limit`` of a result capped at the locked maximum (not an OCPI value: never in a CDR).
LOCKED_MAXIMUM = "locked_maximum"
_REASONS = {
    "min_price": "Minimum session price",
    "max_price": "Maximum session price",
    LOCKED_MAXIMUM: "Capped at the amount locked in escrow",
}


def _as_settled(result: PriceResult, settled: SessionSettled, cdr: Cdr) -> PriceResult:
    """The price as settled: ``result`` itself, or capped at a late budget stop's maximum."""
    price = result.total_incl_vat_units
    if settled.price_before_cap is None:
        if price != settled.amount_settled:
            raise InvoiceError(
                f"the CDR prices to {price} units incl. VAT but {settled.amount_settled} "
                "were settled"
            )
        return result
    cap = settled.amount_settled
    if settled.price_before_cap != price:
        raise InvoiceError(
            f"the CDR prices to {price} units incl. VAT but the settlement states a price of "
            f"{settled.price_before_cap} before the cap"
        )
    if not cap < price or cap > settled.amount_locked:
        raise InvoiceError(
            f"a cap settles less than the price ({price}) and at most the locked maximum "
            f"({settled.amount_locked}), but {cap} were settled"
        )
    capped_result = capped(result, cap, limit=LOCKED_MAXIMUM)
    total = cdr.total_cost
    if total.incl_vat is None or (total.excl_vat, total.incl_vat) != (
        money(capped_result.total_excl_vat_units, result.currency),
        money(capped_result.total_incl_vat_units, result.currency),
    ):
        raise InvoiceError(
            f"the CDR's total_cost ({total.excl_vat} / {total.incl_vat}) is not the price capped "
            f"at the {cap} units settled"
        )
    return capped_result


def _adjustments(result: PriceResult, outside: bool) -> list[Adjustment]:
    if result.adjustment is None or result.price_limit is None:
        return []
    # a min_price clamp charges, a max_price or the locked cap allows (the sign says which)
    charge = result.adjustment.excl_vat_units > 0
    return [
        Adjustment(
            reason=_REASONS[result.price_limit],
            charge=charge,
            amount=abs(result.adjustment.excl_vat_units),
            vat_rate=result.adjustment_rate,
            vat_category=_category(result.adjustment_rate, outside),
        )
    ]


def check_sums(doc: InvoiceDocument) -> None:
    """The EN 16931 sum rules on exact integers, and every amount in whole minor units."""
    signed = [(a.vat_rate, a.amount if a.charge else -a.amount) for a in doc.adjustments]

    def basis(rate: Decimal | None) -> int:
        lines = sum(line.net for line in doc.lines if line.vat_rate == rate)
        return lines + sum(amount for r, amount in signed if r == rate)

    rules = {
        "BR-CO-13 total excl. VAT = lines + charges - allowances": doc.total_excl_vat
        == sum(line.net for line in doc.lines) + sum(amount for _, amount in signed),
        "BR-CO-14 total VAT = the VAT of the rates": doc.total_vat
        == sum(v.vat for v in doc.vat_subtotals),
        "BR-CO-15 total incl. VAT = excl. VAT + VAT": doc.total_incl_vat
        == doc.total_excl_vat + doc.total_vat,
        "BR-S/Z/O-08 a rate's taxable amount = its lines and adjustments": all(
            v.basis == basis(v.vat_rate) for v in doc.vat_subtotals
        ),
        "BR-DEC amounts in whole minor units": all(
            units % units_per_minor(doc.currency) == 0 for units in _amounts(doc)
        ),
    }
    broken = [rule for rule, holds in rules.items() if not holds]
    if broken:
        raise InvoiceError(
            f"the invoice of session {doc.session_id} does not add up: {'; '.join(broken)}"
        )


def _amounts(doc: InvoiceDocument) -> list[int]:
    return [
        *(line.net for line in doc.lines),
        *(a.amount for a in doc.adjustments),
        *(units for v in doc.vat_subtotals for units in (v.basis, v.vat)),
        doc.total_excl_vat,
        doc.total_vat,
        doc.total_incl_vat,
    ]


def _category(rate: Decimal | None, outside: bool) -> str:
    """The EN 16931 VAT category of an item at ``rate`` (None: OCPI's "no VAT applicable").

    Without VAT an item is "O", not subject to VAT, only on an invoice that is ``outside`` VAT
    altogether: EN 16931 allows no other category beside O (BR-O-11..14) and no seller VAT id
    with it (BR-O-02). Otherwise it is "E", exempt, at 0 % with an exemption reason.
    """
    if rate is None:
        return "O" if outside else "E"
    return "Z" if rate == 0 else "S"


def _places(value: Fraction, places: int) -> Decimal:
    return round_half_up(to_decimal(value), places)
