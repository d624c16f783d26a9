"""How a session's exact price becomes currency amounts: the one rounding rule.

The engine keeps every amount exact (rationals). This module turns them into amounts in whole
minor units of the currency (cents for EUR), expressed in token base units, for the settlement,
the CDR and the invoice alike, so all three show the same figures:

1. **Totals, rounded once.** The session's total excl. VAT and total incl. VAT (after min/max
   clamps) are each rounded once to the currency's minor unit, ROUND_HALF_UP. The total incl.
   VAT is the amount settled on chain; the VAT total is incl. minus excl., so excl. + VAT = incl.
   holds exactly.
2. **Per VAT rate** (an EN 16931 invoice states a taxable amount and a VAT amount per rate): the
   rounded total excl. VAT is split over the rates following their exact taxable amounts, and
   the VAT total over the rates following their exact VAT, by largest remainder
   (:func:`~chargenet.core.pricing.money.allocate`). Each rate's figures are within one minor unit
   of exact and add up to the totals exactly.
3. **Per item**: each cost part, plus the min/max clamp as one adjustment booked at the
   session's highest VAT rate (OCPI does not say how a clamp splits across rates), gets its
   rate's taxable amount and VAT split the same way, so lines add up to their rate exactly.

Steps 2 and 3 only split amounts rounded in step 1, always from the exact values; an item whose
exact amount is zero gets zero. Currency amounts are never rounded a second time, and token
units are whole minor units (14.13 EUR = 14_130_000 units).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from chargenet.core.pricing.money import ZERO, allocate, currency_units


@dataclass(frozen=True)
class Rounded:
    """An amount excl. VAT and its VAT, in token base units (whole minor units)."""

    excl_vat_units: int
    vat_units: int

    @property
    def incl_vat_units(self) -> int:
        return self.excl_vat_units + self.vat_units

    def __add__(self, other: Rounded) -> Rounded:
        return Rounded(self.excl_vat_units + other.excl_vat_units, self.vat_units + other.vat_units)


NOTHING = Rounded(0, 0)


@dataclass(frozen=True)
class Item:
    """One exact amount to round: a cost part or the clamp adjustment (rate None: no VAT)."""

    rate: Decimal | None
    excl_vat: Fraction
    vat: Fraction


@dataclass(frozen=True)
class VatRate:
    """The session's amounts at one VAT rate (None: no VAT applies), exact and rounded."""

    rate: Decimal | None
    exact_excl_vat: Fraction
    exact_vat: Fraction
    amounts: Rounded


@dataclass(frozen=True)
class Rounding:
    currency: str
    total: Rounded
    items: tuple[Rounded, ...]  # one per input item, in input order
    vat_rates: tuple[VatRate, ...]  # no VAT first, then ascending rates


def round_session(
    currency: str, items: Sequence[Item], total_excl_vat: Fraction, total_incl_vat: Fraction
) -> Rounding:
    """Apply the rule above. ``items`` must add up exactly to the two totals."""
    if sum((i.excl_vat for i in items), ZERO) != total_excl_vat or (
        sum((i.excl_vat + i.vat for i in items), ZERO) != total_incl_vat
    ):
        raise ValueError("the items do not add up to the totals")
    excl = currency_units(total_excl_vat, currency)
    total = Rounded(excl, currency_units(total_incl_vat, currency) - excl)
    rates = sorted({i.rate for i in items}, key=lambda r: (r is not None, r or 0))
    members = {rate: [n for n, i in enumerate(items) if i.rate == rate] for rate in rates}
    exact = {
        rate: (
            sum((items[n].excl_vat for n in members[rate]), ZERO),
            sum((items[n].vat for n in members[rate]), ZERO),
        )
        for rate in rates
    }
    per_rate = _split([exact[r] for r in rates], total, currency)
    rounded: list[Rounded] = [NOTHING] * len(items)
    for rate, amounts in zip(rates, per_rate, strict=True):
        exact_items = [(items[n].excl_vat, items[n].vat) for n in members[rate]]
        inside = _split(exact_items, amounts, currency)
        for n, value in zip(members[rate], inside, strict=True):
            rounded[n] = value
    return Rounding(
        currency=currency,
        total=total,
        items=tuple(rounded),
        vat_rates=tuple(
            VatRate(r, exact[r][0], exact[r][1], a) for r, a in zip(rates, per_rate, strict=True)
        ),
    )


def _split(
    exact: Sequence[tuple[Fraction, Fraction]], total: Rounded, currency: str
) -> list[Rounded]:
    nets = _nonzero_allocate([e for e, _ in exact], total.excl_vat_units, currency)
    vats = _nonzero_allocate([v for _, v in exact], total.vat_units, currency)
    return [Rounded(n, v) for n, v in zip(nets, vats, strict=True)]


def _nonzero_allocate(exact: Sequence[Fraction], total: int, currency: str) -> list[int]:
    """:func:`allocate` over the non-zero amounts only, so a free item never gets a cent."""
    chosen = [n for n, value in enumerate(exact) if value != 0] or list(range(len(exact)))
    result = [0] * len(exact)
    for n, units in zip(chosen, allocate([exact[n] for n in chosen], total, currency), strict=True):
        result[n] = units
    return result
