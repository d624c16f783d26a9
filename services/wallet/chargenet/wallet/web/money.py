"""Money on the pages: token base units shown in the currency, and amounts typed by people.

Everything stays an integer number of token base units (6 decimals) until it is shown; what a
person types is parsed exactly (``Decimal``) and must be whole minor units of the currency.
"""

from __future__ import annotations

from decimal import Decimal

from chargenet.core.pricing.money import TOKEN_DECIMALS, minor_unit, round_half_up
from chargenet.core.web.numbers import NotANumber, typed_decimal

#: The largest amount a form accepts, in currency units: a guard against typos, not a limit of
#: the wallet (which checks balances itself).
MAX_FORM_AMOUNT = Decimal(100_000)


class AmountError(ValueError):
    """What a person typed is not an amount this form takes; the message says why."""


def show(units: int | None, currency: str) -> str:
    """``12_340_000`` EUR -> ``12.34 EUR``; sub-cent live costs round half up for display."""
    if units is None:
        return "\u2013"  # an en dash: no amount yet
    places = minor_unit(currency)
    amount = round_half_up(Decimal(units).scaleb(-TOKEN_DECIMALS), places)
    return f"{amount:,.{places}f} {currency}"


def parse(text: str, currency: str, *, field: str) -> int:
    """A positive amount in the currency, as typed (``20``, ``20.5``, ``20,50``) -> base units."""
    cleaned = text.replace(" ", "")  # a thousands separator as some people type it
    if not cleaned.strip():
        raise AmountError(f"{field}: enter an amount in {currency}")
    try:
        amount = typed_decimal(cleaned)
    except NotANumber:
        raise AmountError(f"{field}: {text!r} is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise AmountError(f"{field}: the amount must be more than zero")
    if amount > MAX_FORM_AMOUNT:
        raise AmountError(f"{field}: at most {MAX_FORM_AMOUNT} {currency} at once")
    places = minor_unit(currency)
    if amount != round_half_up(amount, places):
        raise AmountError(f"{field}: {currency} has {places} decimals at most")
    return int(amount.scaleb(TOKEN_DECIMALS))


def minor_places(currency: str) -> int:
    """Decimals the currency shows (2 for EUR), for the live view's script."""
    return minor_unit(currency)
