"""Country codes as invoices and tariffs need them (ISO 3166-1 alpha-2)."""

from __future__ import annotations

import pycountry


def is_country(code: str) -> bool:
    """An assigned ISO 3166-1 alpha-2 code, in capitals (``DE``; not ``de``, ``XX`` or ``DEU``)."""
    return len(code) == 2 and code.isupper() and pycountry.countries.get(alpha_2=code) is not None
