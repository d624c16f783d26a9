"""What the account page's billing form needs: the countries to choose from, and which field a
refusal is about (the wallet API's messages start with the field's name)."""

from __future__ import annotations

import pycountry

BILLING_FIELDS = ("name", "street", "postcode", "city", "country")

#: (ISO 3166-1 alpha-2, "Name (XX)"), sorted by name: what the country select offers.
COUNTRIES: tuple[tuple[str, str], ...] = tuple(
    sorted(
        ((c.alpha_2, f"{c.name} ({c.alpha_2})") for c in pycountry.countries),
        key=lambda item: item[1],
    )
)


def country_name(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code)
    return f"{country.name} ({code})" if country is not None else code


def invalid_field(error: str | None) -> str | None:
    """``"country: 'XX' is not ..."`` -> ``"country"``; None when no field is named."""
    if error is None:
        return None
    field = error.split(":", 1)[0].strip()
    return field if field in BILLING_FIELDS else None
