"""The rounding rule (chargenet.core.pricing.rounding) on arbitrary exact amounts."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargenet.core.pricing import PricingError, currency_units, minor_unit, units_to_amount
from chargenet.core.pricing.money import allocate, units_per_minor
from chargenet.core.pricing.rounding import Item, Rounded, round_session

RATES = [None, Decimal(0), Decimal(7), Decimal("5.5"), Decimal(19), Decimal(20)]


@st.composite
def sessions(draw: st.DrawFn) -> tuple[str, list[Item]]:
    """Parts with exact amounts (thousandths of a cent up to 100.00, some free), VAT from the
    rate, and sometimes a clamp adjustment whose VAT is not its rate's (OCPI's two bounds)."""
    currency = draw(st.sampled_from(["EUR", "JPY", "KWD"]))
    items = []
    for _ in range(draw(st.integers(1, 6))):
        rate = draw(st.sampled_from(RATES))
        scale = draw(st.sampled_from([Fraction(1), Fraction(1, 3), Fraction(7, 60)]))
        excl = Fraction(draw(st.integers(0, 10_000_000)), 100_000) * scale
        items.append(Item(rate, excl, excl * Fraction(rate or 0) / 100))
    if draw(st.booleans()):
        total = sum((i.excl_vat for i in items), Fraction(0))
        cut = Fraction(draw(st.integers(0, 100)), 100) * total
        vat_cut = Fraction(draw(st.integers(0, 100)), 100) * sum(i.vat for i in items)
        rate = max((i.rate for i in items if i.rate is not None), default=None)
        items.append(Item(rate, -cut, -vat_cut))
    return currency, items


@settings(max_examples=300, deadline=None)
@given(sessions())
def test_totals_round_once_and_every_split_adds_up(session: tuple[str, list[Item]]) -> None:
    currency, items = session
    excl = sum((i.excl_vat for i in items), Fraction(0))
    incl = sum((i.excl_vat + i.vat for i in items), Fraction(0))
    rounding = round_session(currency, items, excl, incl)
    minor = units_per_minor(currency)
    # 1. the totals are the exact totals rounded once, half up, to the minor unit
    assert rounding.total.excl_vat_units == currency_units(excl, currency)
    assert rounding.total.incl_vat_units == currency_units(incl, currency)
    # 2./3. rates and items split them exactly, in whole minor units, close to exact
    assert sum(rounding.items, Rounded(0, 0)) == rounding.total
    assert sum((r.amounts for r in rounding.vat_rates), Rounded(0, 0)) == rounding.total
    for rate in rounding.vat_rates:
        members = [a for i, a in zip(items, rounding.items, strict=True) if i.rate == rate.rate]
        assert sum(members, Rounded(0, 0)) == rate.amounts
        assert abs(rate.amounts.excl_vat_units - rate.exact_excl_vat * 10**6) <= minor
        assert abs(rate.amounts.vat_units - rate.exact_vat * 10**6) <= minor
    for item, amounts in zip(items, rounding.items, strict=True):
        assert amounts.excl_vat_units % minor == 0 and amounts.vat_units % minor == 0
        assert abs(amounts.excl_vat_units - item.excl_vat * 10**6) <= 2 * minor
        assert abs(amounts.vat_units - item.vat * 10**6) <= 2 * minor
        if item.excl_vat == 0:
            assert amounts.excl_vat_units == 0  # a free part never gets a cent
        if item.vat == 0:
            assert amounts.vat_units == 0


def test_allocate_gives_missing_minor_units_to_the_largest_remainders() -> None:
    thirds = [Fraction(1, 300)] * 3  # three thirds of a cent: 1 cent goes to the first
    assert allocate(thirds, 10_000, "EUR") == [10_000, 0, 0]
    assert allocate([Fraction("0.004"), Fraction("0.006")], 10_000, "EUR") == [0, 10_000]
    assert allocate([Fraction("-0.015"), Fraction("0.02")], 0, "EUR") == [-20_000, 20_000]
    with pytest.raises(ValueError, match="not whole minor units of EUR"):
        allocate([Fraction(1)], 1_000_001, "EUR")


def test_currency_amounts_and_their_errors() -> None:
    assert str(units_to_amount(14_130_000, "EUR")) == "14.13"
    assert str(units_to_amount(0, "EUR")) == "0.00"
    assert str(units_to_amount(317_000_000, "JPY")) == "317"
    assert str(units_to_amount(913_000, "KWD")) == "0.913"
    with pytest.raises(ValueError, match="not whole minor units"):
        units_to_amount(14_125_000, "EUR")
    with pytest.raises(PricingError, match=r"unknown currency 'EURO'.*known: AED"):
        minor_unit("EURO")
    assert currency_units(Fraction("0.5"), "JPY") == 1_000_000
    assert currency_units(Fraction("1.2345"), "BHD") == 1_235_000
