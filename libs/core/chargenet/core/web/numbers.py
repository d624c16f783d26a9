"""Numbers as people type them into the pages' forms and search fields.

``int()``, ``float()`` and ``Decimal()`` read the digits of any script (full-width,
Arabic-Indic, Bengali, ...) and ``float``/``Decimal`` also words ('NaN', 'inf') and
underscores ('1_0'): a form would take as an amount or a place what a person never meant as
one, and what the pages pass on would differ from what was shown. The JSON APIs refuse these;
every number a page reads goes through here so that the pages do too.
"""

from __future__ import annotations

import re
from decimal import Decimal

# ASCII digits only ([0-9], not \d, which is any script's): a point or comma for decimals,
# an exponent for what an engineer may paste (the callers bound the value).
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
#: Surrounding blanks a browser or a paste leaves; other (non-ASCII) spaces are not a number's.
_BLANKS = " \t\r\n"


class NotANumber(ValueError):
    """The text is not a number written in ASCII digits."""


def typed_decimal(text: str) -> Decimal:
    """``' 20,5 '`` -> ``Decimal('20.5')``; anything but ASCII decimal notation is refused."""
    cleaned = text.strip(_BLANKS).replace(",", ".")
    if not _DECIMAL.fullmatch(cleaned):
        raise NotANumber(f"{text!r} is not a number")
    return Decimal(cleaned)


def typed_int(text: str) -> int:
    """``' 3 '`` -> ``3``; anything but ASCII digits (with a sign) is refused."""
    cleaned = text.strip(_BLANKS)
    # int() would raise on more than 4,300 digits anyway; no form number is near that.
    if not _INTEGER.fullmatch(cleaned) or len(cleaned) > 100:
        raise NotANumber(f"{text!r} is not a whole number")
    return int(cleaned)
