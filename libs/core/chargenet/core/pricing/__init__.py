"""Tariffs, the tariff engine and CDRs: one API for the escrow, invoicing and the CLI.

    from chargenet.core.pricing import Tariff, price_samples, price_cdr

    result = price_samples(tariff, samples, time_zone="Europe/Berlin")   # escrow, budget check
    result = price_cdr(tariff, cdr, time_zone="Europe/Berlin")           # anyone re-checking
    result.total_incl_vat_units    # int, token base units (6 decimals): the settled amount,
                                   # rounded once to the currency's minor unit (14_130_000)
    result.total_incl_vat_decimal  # the same in currency, with its decimals (Decimal("14.13"))
    result.total_incl_vat          # exact Fraction (14.125); result.to_json() for Decimals

See :mod:`chargenet.core.pricing.engine` for the pricing rules and the choices made where OCPI is
ambiguous, :mod:`chargenet.core.pricing.rounding` for how exact amounts become currency amounts
(totals, VAT per rate, per part), and :mod:`chargenet.core.pricing.canonical` for the CDR hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from chargenet.core.pricing.canonical import canonical_hash, canonical_json, dumps, tariff_hash
from chargenet.core.pricing.cdr import (
    AuthMethod,
    Cdr,
    CdrDimension,
    CdrDimensionType,
    CdrLocation,
    CdrToken,
    ChargingPeriod,
    SignedData,
    SignedValue,
    TokenType,
    build_cdr,
    credit_cdr,
    usage_from_cdr,
)
from chargenet.core.pricing.engine import price
from chargenet.core.pricing.money import (
    MINOR_UNITS,
    TOKEN_DECIMALS,
    TOKEN_SCALE,
    UnknownCurrencyError,
    currency_units,
    minor_unit,
    to_units,
    units_to_amount,
)
from chargenet.core.pricing.result import CostPart, PriceResult
from chargenet.core.pricing.rounding import Rounded, Rounding, VatRate
from chargenet.core.pricing.running import RunningPrice, RunningPrices
from chargenet.core.pricing.tariff import (
    DayOfWeek,
    Price,
    PriceComponent,
    Tariff,
    TariffDimensionType,
    TariffElement,
    TariffRestrictions,
    tariff_of,
)
from chargenet.core.pricing.usage import (
    MeterSample,
    PricingError,
    Usage,
    meter_sample,
    usage_from_samples,
)


def price_samples(
    tariff: Tariff,
    samples: Sequence[MeterSample],
    *,
    end: datetime | None = None,
    time_zone: str | ZoneInfo = "UTC",
) -> PriceResult:
    """The price of a session given by its meter samples (``end`` adds parking after the last)."""
    running = RunningPrice(tariff, time_zone=time_zone)
    for sample in samples:
        running.add(sample)
    return running.result(end=end)


def price_cdr(tariff: Tariff, cdr: Cdr, *, time_zone: str | ZoneInfo = "UTC") -> PriceResult:
    """The price of the session a CDR describes, recomputed from its charging periods."""
    if cdr.currency != tariff.currency:
        raise PricingError(f"the CDR is in {cdr.currency} but the tariff in {tariff.currency}")
    return price(tariff, usage_from_cdr(cdr), time_zone=time_zone)


def cdr_hash(cdr: Cdr) -> bytes:
    """keccak-256 of the CDR's canonical JSON: what settlement puts on chain."""
    return canonical_hash(cdr)


__all__ = [
    "MINOR_UNITS",
    "TOKEN_DECIMALS",
    "TOKEN_SCALE",
    "AuthMethod",
    "Cdr",
    "CdrDimension",
    "CdrDimensionType",
    "CdrLocation",
    "CdrToken",
    "ChargingPeriod",
    "CostPart",
    "DayOfWeek",
    "MeterSample",
    "Price",
    "PriceComponent",
    "PriceResult",
    "PricingError",
    "Rounded",
    "Rounding",
    "RunningPrice",
    "RunningPrices",
    "SignedData",
    "SignedValue",
    "Tariff",
    "TariffDimensionType",
    "TariffElement",
    "TariffRestrictions",
    "TokenType",
    "UnknownCurrencyError",
    "Usage",
    "VatRate",
    "build_cdr",
    "canonical_hash",
    "canonical_json",
    "cdr_hash",
    "credit_cdr",
    "currency_units",
    "dumps",
    "meter_sample",
    "minor_unit",
    "price",
    "price_cdr",
    "price_samples",
    "tariff_hash",
    "tariff_of",
    "to_units",
    "units_to_amount",
    "usage_from_cdr",
    "usage_from_samples",
]
