"""Exact amounts and the one rounding step to token base units.

Why rationals inside: a per-hour price applied to a count of seconds (1.00 EUR/h for 7 s) has no
finite decimal expansion, so any fixed-precision Decimal context would round in the middle of the
computation. The engine therefore adds and multiplies ``Fraction`` values, which are exact, and
converts to ``Decimal`` only when reporting. The amount that moves on chain is computed from the
exact value with one rounding: ``units = round_half_up(amount * 10**TOKEN_DECIMALS)``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

#: The settlement token has 6 decimals: 1 EUR = 1_000_000 base units.
TOKEN_DECIMALS = 6
TOKEN_SCALE = 10**TOKEN_DECIMALS

#: Reported Decimals of non-terminating values (e.g. 1/3) carry this many places.
REPORT_PLACES = 18

ZERO = Fraction(0)


def frac(value: Decimal | int | str) -> Fraction:
    """An exact rational from a Decimal/int/str (never from a float: floats are not exact)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a finite number: {value}")
        return Fraction(value)
    return Fraction(value)


def to_units(amount: Fraction) -> int:
    """Token base units: ``amount * 10**6`` rounded once, half away from zero (ROUND_HALF_UP)."""
    scaled = amount * TOKEN_SCALE
    sign = -1 if scaled < 0 else 1
    numerator, denominator = abs(scaled.numerator), scaled.denominator
    whole, remainder = divmod(numerator, denominator)
    if 2 * remainder >= denominator:
        whole += 1
    return int(sign * whole)


def units_to_decimal(units: int) -> Decimal:
    """Base units as a currency amount with exactly six decimals."""
    return Decimal(units).scaleb(-TOKEN_DECIMALS).quantize(Decimal(1).scaleb(-TOKEN_DECIMALS))


def to_decimal(value: Fraction) -> Decimal:
    """The exact Decimal when the value terminates in base 10, else 18 places (ROUND_HALF_UP)."""
    places = _terminating_places(value.denominator)
    if places is not None:
        digits = value.numerator * (10**places // value.denominator)
        return Decimal(digits).scaleb(-places)
    scaled = abs(value) * 10**REPORT_PLACES
    whole, remainder = divmod(scaled.numerator, scaled.denominator)
    if 2 * remainder >= scaled.denominator:
        whole += 1
    return Decimal(whole if value >= 0 else -whole).scaleb(-REPORT_PLACES)


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
