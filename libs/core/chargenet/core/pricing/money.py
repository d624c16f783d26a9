"""Exact amounts, the one rounding step to the currency's minor unit, and token base units.

Why rationals inside: a per-hour price applied to a count of seconds (1.00 EUR/h for 7 s) has no
finite decimal expansion, so any fixed-precision Decimal context would round in the middle of the
computation. The engine therefore adds and multiplies ``Fraction`` values, which are exact, and
converts to ``Decimal`` only when reporting.

Two scales, never confused:

- the currency's minor unit (ISO 4217: 2 decimals for EUR, 0 for JPY, 3 for KWD): what a price is
  rounded to, once, ROUND_HALF_UP, because no invoice or bank statement shows a fraction of a cent;
- the token's base unit (6 decimals: 1 EUR = 1_000_000 units): what moves on chain. A rounded
  currency amount converts to base units exactly (14.13 EUR -> 14_130_000), never rounding again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

#: The settlement token has 6 decimals: 1 EUR = 1_000_000 base units.
TOKEN_DECIMALS = 6
TOKEN_SCALE = 10**TOKEN_DECIMALS

#: Reported Decimals of non-terminating values (e.g. 1/3) carry this many places.
REPORT_PLACES = 18

ZERO = Fraction(0)


class PricingError(ValueError):
    """The tariff or the usage cannot be priced; the message says why."""


class UnknownCurrencyError(PricingError):
    """A currency code with no known ISO 4217 minor unit: its amounts cannot be rounded."""


def _codes(places: int, codes: str) -> dict[str, int]:
    return dict.fromkeys(codes.split(), places)


#: ISO 4217 minor units (decimals) of the currencies chargenet prices in. A code not listed is
#: refused rather than guessed: rounding JPY to cents or KWD to cents would settle a wrong amount.
MINOR_UNITS: dict[str, int] = {
    **_codes(
        2,
        "EUR USD GBP CHF SEK NOK DKK PLN CZK HUF RON BGN RSD BAM MKD ALL MDL UAH GEL TRY "
        "CAD AUD NZD MXN BRL ARS PEN ZAR INR CNY HKD SGD TWD THB MYR IDR PHP ILS AED SAR QAR "
        "EGP MAD NGN KES",
    ),
    **_codes(0, "JPY KRW ISK CLP VND PYG UGX XOF XAF XPF"),
    **_codes(3, "BHD KWD OMR JOD TND LYD IQD"),
}
assert max(MINOR_UNITS.values()) <= TOKEN_DECIMALS  # a minor unit must be whole base units


def minor_unit(currency: str) -> int:
    """The ISO 4217 number of decimals of ``currency`` (EUR: 2, JPY: 0, KWD: 3)."""
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise UnknownCurrencyError(
            f"unknown currency {currency!r}: no ISO 4217 minor unit is known for it, so its "
            f"amounts cannot be rounded (known: {', '.join(sorted(MINOR_UNITS))})"
        ) from None


def units_per_minor(currency: str) -> int:
    """Token base units in one minor unit of ``currency`` (EUR: 10_000 per cent)."""
    return int(10 ** (TOKEN_DECIMALS - minor_unit(currency)))


def _round_half_up(value: Fraction) -> int:
    """The nearest integer, halves away from zero (ROUND_HALF_UP on both signs)."""
    whole, remainder = divmod(abs(value.numerator), value.denominator)
    if 2 * remainder >= value.denominator:
        whole += 1
    return -whole if value < 0 else whole


def frac(value: Decimal | int | str) -> Fraction:
    """An exact rational from a Decimal/int/str (never from a float: floats are not exact)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite number: {value}")
        return Fraction(value)
    return Fraction(value)


def to_units(amount: Fraction) -> int:
    """Token base units of ``amount`` rounded half up to the token's 6 decimals.

    A token-level conversion (e.g. a lock amount); prices go through :func:`currency_units`.
    """
    return _round_half_up(amount * TOKEN_SCALE)


def currency_units(amount: Fraction, currency: str) -> int:
    """The one rounding of a price: to the currency's minor unit (half up), as token base units.

    ``currency_units(Fraction("14.125"), "EUR") == 14_130_000``.
    """
    per_minor = units_per_minor(currency)
    return _round_half_up(amount * TOKEN_SCALE / per_minor) * per_minor


def allocate(exact: Sequence[Fraction], total_units: int, currency: str) -> list[int]:
    """Split ``total_units`` (whole minor units) over items, following their exact amounts.

    Largest remainder in whole minor units: each item gets its exact amount rounded down, and the
    minor units still missing go to the items with the largest remainders (ties: the earlier
    item), so the items add up to the total exactly and each is within one minor unit of exact.
    """
    per_minor = units_per_minor(currency)
    if total_units % per_minor:
        raise ValueError(f"{total_units} base units are not whole minor units of {currency}")
    scaled = [value * TOKEN_SCALE / per_minor for value in exact]
    minors = [math.floor(value) for value in scaled]
    missing = total_units // per_minor - sum(minors)
    if not -len(minors) <= missing <= len(minors):
        raise ValueError(f"cannot split {total_units} base units over {len(minors)} amounts")
    order = sorted(range(len(minors)), key=lambda i: scaled[i] - minors[i], reverse=True)
    chosen = order[:missing] if missing >= 0 else order[missing:]
    for index in chosen:
        minors[index] += 1 if missing > 0 else -1
    return [m * per_minor for m in minors]


def units_to_decimal(units: int) -> Decimal:
    """Base units as a currency amount with exactly six decimals."""
    return Decimal(units).scaleb(-TOKEN_DECIMALS).quantize(Decimal(1).scaleb(-TOKEN_DECIMALS))


def units_to_amount(units: int, currency: str) -> Decimal:
    """Base units as an amount with the currency's decimals (14_130_000 EUR -> ``14.13``).

    Refuses units that are not whole minor units: such an amount was never rounded.
    """
    places = minor_unit(currency)
    if units % units_per_minor(currency):
        raise ValueError(f"{units} base units are not whole minor units of {currency}")
    return Decimal(units).scaleb(-TOKEN_DECIMALS).quantize(Decimal(1).scaleb(-places))


def to_decimal(value: Fraction) -> Decimal:
    """The exact Decimal when the value terminates in base 10, else 18 places (ROUND_HALF_UP)."""
    places = _terminating_places(value.denominator)
    if places is not None:
        digits = value.numerator * (10**places // value.denominator)
        return Decimal(digits).scaleb(-places)
    return Decimal(_round_half_up(value * 10**REPORT_PLACES)).scaleb(-REPORT_PLACES)


def _terminating_places(denominator: int) -> int | None:
    """The smallest p with ``denominator | 10**p``, or None when there is none."""
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    return max(twos, fives) if denominator == 1 else None


def plain(value: Decimal) -> str:
    """Plain decimal notation without exponent or trailing zeros (``1E+1`` -> ``10``)."""
    normalized = value.normalize()
    if normalized == 0:
        return "0"
    text = format(normalized, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def round_half_up(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
