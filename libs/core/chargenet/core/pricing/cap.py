"""Capping a session's price at the amount the driver locked: one rule for escrow and invoicing.

The escrow settles the capped amount and states it in the CDR; invoicing recomputes the same cap
to book the cut as an allowance. Both must agree to the unit, so the rule lives here once.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

from chargenet.core.pricing.money import TOKEN_SCALE, units_per_minor
from chargenet.core.pricing.result import PriceResult
from chargenet.core.pricing.rounding import Item, round_session


def settleable_maximum(max_amount: int, currency: str) -> int:
    """The locked maximum in whole minor units, rounded down: settling a rounded-up cent would
    revert on chain, and an amount between cents cannot be invoiced (EN 16931 BR-DEC)."""
    per_minor = units_per_minor(currency)
    return max_amount // per_minor * per_minor


def capped(result: PriceResult, cap: int, *, limit: str) -> PriceResult:
    """``result`` with its totals capped at ``cap`` units incl. VAT, the engine's way of a
    ``max_price`` clamp: excl. VAT capped at the same incl/excl ratio, the cut booked as one
    adjustment at the session's highest VAT rate, then the one rounding rule. ``limit`` names the
    cap in ``price_limit`` (how a CDR or an invoice labels it)."""
    incl_cap = Fraction(cap, TOKEN_SCALE)
    ratio = result.total_excl_vat / result.total_incl_vat if result.total_incl_vat else Fraction(1)
    excl = min(result.total_excl_vat, incl_cap * ratio)
    incl = min(result.total_incl_vat, incl_cap)
    rates = [p.vat_rate for p in result.parts if p.vat_rate is not None]
    rate = max(rates) if rates else None
    items = [Item(p.vat_rate, p.excl_vat, p.vat) for p in result.parts]
    extra_excl = excl - result.components_excl_vat
    items.append(Item(rate, extra_excl, incl - result.components_incl_vat - extra_excl))
    return replace(
        result,
        total_excl_vat=excl,
        total_incl_vat=incl,
        price_limit=limit,
        adjustment_rate=rate,
        rounding=round_session(result.currency, items, excl, incl),
    )
