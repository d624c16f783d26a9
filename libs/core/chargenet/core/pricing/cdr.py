"""The OCPI 2.2.1 CDR: built from a priced session, read back as usage, hashed for the chain.

CDRs are append-only: a correction is a credit CDR (:func:`credit_cdr`, every cost negated,
``credit_reference_id`` pointing at the original) followed by a new CDR.

Amounts written by :func:`build_cdr` have the currency's decimals: ``total_cost`` is the session
total rounded once (incl. VAT: the settled amount), and each ``total_*_cost`` adds up the rounded
shares of its cost parts before any min/max clamp (:mod:`chargenet.core.pricing.rounding`), so
without a clamp they add up exactly to ``total_cost``.

Volumes written by :func:`build_cdr`: energy per period is the difference of the cumulative
energy rounded to 1 mWh (6 decimals of kWh) at each period end, so the periods add up to the
exact total and a ``min_kwh`` boundary stays on a period boundary. Period start times are to the
microsecond; re-pricing a CDR takes each period's length from these timestamps (exact) and only
its split between charging and parking from the TIME / PARKING_TIME volumes, which are shown to
six decimals of an hour. As OCPI 2.2.1 defines them, ``total_time`` is the whole session (start
to end, charging and not), ``total_parking_time`` the part of it not charging, and a period's TIME
and PARKING_TIME its charging and not charging time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Annotated, Self

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from chargenet.core.pricing.money import ZERO, frac, round_half_up, to_decimal, units_to_amount
from chargenet.core.pricing.result import PeriodResult, PriceResult
from chargenet.core.pricing.rounding import Rounded
from chargenet.core.pricing.tariff import OcpiModel, Price, Tariff, TariffDimensionType
from chargenet.core.pricing.usage import Interval, PricingError, Range, Usage, seconds_between


class CdrDimensionType(StrEnum):
    CURRENT = "CURRENT"
    ENERGY = "ENERGY"
    ENERGY_EXPORT = "ENERGY_EXPORT"
    ENERGY_IMPORT = "ENERGY_IMPORT"
    MAX_CURRENT = "MAX_CURRENT"
    MIN_CURRENT = "MIN_CURRENT"
    MAX_POWER = "MAX_POWER"
    MIN_POWER = "MIN_POWER"
    PARKING_TIME = "PARKING_TIME"
    POWER = "POWER"
    RESERVATION_TIME = "RESERVATION_TIME"
    STATE_OF_CHARGE = "STATE_OF_CHARGE"
    TIME = "TIME"


class TokenType(StrEnum):
    AD_HOC_USER = "AD_HOC_USER"
    APP_USER = "APP_USER"
    OTHER = "OTHER"
    RFID = "RFID"


class AuthMethod(StrEnum):
    AUTH_REQUEST = "AUTH_REQUEST"
    COMMAND = "COMMAND"
    WHITELIST = "WHITELIST"


class CdrToken(OcpiModel):
    country_code: Annotated[str, StringConstraints(min_length=2, max_length=2)]
    party_id: Annotated[str, StringConstraints(min_length=3, max_length=3)]
    uid: Annotated[str, StringConstraints(min_length=1, max_length=36)]
    type: TokenType
    contract_id: Annotated[str, StringConstraints(min_length=1, max_length=36)]


class GeoLocation(OcpiModel):
    latitude: Annotated[str, StringConstraints(pattern=r"^-?[0-9]{1,2}\.[0-9]{5,7}$")]
    longitude: Annotated[str, StringConstraints(pattern=r"^-?[0-9]{1,3}\.[0-9]{5,7}$")]


class CdrLocation(OcpiModel):
    id: Annotated[str, StringConstraints(min_length=1, max_length=36)]
    name: Annotated[str, StringConstraints(max_length=255)] | None = None
    address: Annotated[str, StringConstraints(max_length=45)]
    city: Annotated[str, StringConstraints(max_length=45)]
    postal_code: Annotated[str, StringConstraints(max_length=10)] | None = None
    state: Annotated[str, StringConstraints(max_length=20)] | None = None
    country: Annotated[str, StringConstraints(min_length=3, max_length=3)]
    coordinates: GeoLocation
    evse_uid: Annotated[str, StringConstraints(min_length=1, max_length=36)]
    evse_id: Annotated[str, StringConstraints(min_length=1, max_length=48)]
    connector_id: Annotated[str, StringConstraints(min_length=1, max_length=36)]
    connector_standard: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    connector_format: Annotated[str, StringConstraints(pattern=r"^(SOCKET|CABLE)$")]
    connector_power_type: Annotated[
        str, StringConstraints(pattern=r"^(AC_1_PHASE|AC_2_PHASE|AC_2_PHASE_SPLIT|AC_3_PHASE|DC)$")
    ]


class CdrDimension(OcpiModel):
    type: CdrDimensionType
    volume: Decimal = Field(allow_inf_nan=False)


class ChargingPeriod(OcpiModel):
    start_date_time: AwareDatetime
    dimensions: Annotated[list[CdrDimension], Field(min_length=1)]
    tariff_id: Annotated[str, StringConstraints(max_length=36)] | None = None

    def volume(self, dimension: CdrDimensionType) -> Decimal | None:
        for item in self.dimensions:
            if item.type is dimension:
                return item.volume
        return None


class SignedValue(OcpiModel):
    nature: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    plain_data: Annotated[str, StringConstraints(max_length=512)]
    signed_data: Annotated[str, StringConstraints(max_length=5000)]


class SignedData(OcpiModel):
    encoding_method: Annotated[str, StringConstraints(min_length=1, max_length=36)]
    encoding_method_version: int | None = None
    public_key: Annotated[str, StringConstraints(max_length=512)] | None = None
    signed_values: Annotated[list[SignedValue], Field(min_length=1)]
    url: Annotated[str, StringConstraints(max_length=512)] | None = None


class Cdr(OcpiModel):
    country_code: Annotated[str, StringConstraints(min_length=2, max_length=2)]
    party_id: Annotated[str, StringConstraints(min_length=3, max_length=3)]
    id: Annotated[str, StringConstraints(min_length=1, max_length=39)]
    start_date_time: AwareDatetime
    end_date_time: AwareDatetime
    session_id: Annotated[str, StringConstraints(max_length=36)] | None = None
    cdr_token: CdrToken
    auth_method: AuthMethod
    authorization_reference: Annotated[str, StringConstraints(max_length=36)] | None = None
    cdr_location: CdrLocation
    meter_id: Annotated[str, StringConstraints(max_length=255)] | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    tariffs: list[Tariff] = Field(default_factory=list)
    charging_periods: Annotated[list[ChargingPeriod], Field(min_length=1)]
    signed_data: SignedData | None = None
    total_cost: Price
    total_fixed_cost: Price | None = None
    total_energy: Decimal = Field(allow_inf_nan=False)
    total_energy_cost: Price | None = None
    total_time: Decimal = Field(allow_inf_nan=False)
    total_time_cost: Price | None = None
    total_parking_time: Decimal | None = Field(default=None, allow_inf_nan=False)
    total_parking_cost: Price | None = None
    total_reservation_cost: Price | None = None
    remark: Annotated[str, StringConstraints(max_length=255)] | None = None
    invoice_reference_id: Annotated[str, StringConstraints(max_length=39)] | None = None
    credit: bool | None = None
    credit_reference_id: Annotated[str, StringConstraints(max_length=39)] | None = None
    home_charging_compensation: bool | None = None
    last_updated: AwareDatetime

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.end_date_time < self.start_date_time:
            raise ValueError("end_date_time is before start_date_time")
        if self.credit and not self.credit_reference_id:
            raise ValueError("a credit CDR needs credit_reference_id")
        if not self.credit and len(self.id) > 36:
            raise ValueError("id: a non-credit CDR id has at most 36 characters")
        starts = [p.start_date_time for p in self.charging_periods]
        if starts != sorted(starts):
            raise ValueError("charging_periods are not in time order")
        if starts[0] < self.start_date_time or starts[-1] > self.end_date_time:
            raise ValueError("a charging period starts outside the session")
        return self


def build_cdr(
    *,
    cdr_id: str,
    country_code: str,
    party_id: str,
    session_id: str,
    token: CdrToken,
    auth_method: AuthMethod,
    location: CdrLocation,
    tariff: Tariff,
    result: PriceResult,
    last_updated: datetime,
    signed_data: SignedData | None = None,
    meter_id: str | None = None,
    remark: str | None = None,
) -> Cdr:
    """The CDR of a priced session. ``remark`` carries a failed meter-data verification."""
    periods = _charging_periods(result, tariff.id)
    return Cdr(
        country_code=country_code,
        party_id=party_id,
        id=cdr_id,
        start_date_time=result.start,
        end_date_time=result.end,
        session_id=session_id,
        cdr_token=token,
        auth_method=auth_method,
        cdr_location=location,
        meter_id=meter_id,
        currency=result.currency,
        tariffs=[tariff],
        charging_periods=periods,
        signed_data=signed_data,
        total_cost=_price(result.rounding.total, result.currency),
        total_fixed_cost=_cost(result, TariffDimensionType.FLAT),
        total_energy=_kwh(result.energy_wh),
        total_energy_cost=_cost(result, TariffDimensionType.ENERGY),
        total_time=_hours(result.session_seconds),
        total_time_cost=_cost(result, TariffDimensionType.TIME),
        total_parking_time=_hours(result.parking_seconds),
        total_parking_cost=_cost(result, TariffDimensionType.PARKING_TIME),
        remark=remark,
        last_updated=last_updated,
    )


def credit_cdr(original: Cdr, *, last_updated: datetime, suffix: str = "-CR") -> Cdr:
    """The credit CDR that cancels ``original``: same session data, every cost negated."""
    if original.credit:
        raise PricingError("a credit CDR cannot itself be credited")

    def negate(price: Price | None) -> Price | None:
        if price is None:
            return None
        incl = -price.incl_vat if price.incl_vat is not None else None
        return Price(excl_vat=-price.excl_vat, incl_vat=incl)

    total = negate(original.total_cost)
    assert total is not None
    return original.model_copy(
        update={
            "id": original.id + suffix,
            "credit": True,
            "credit_reference_id": original.id,
            "total_cost": total,
            "total_fixed_cost": negate(original.total_fixed_cost),
            "total_energy_cost": negate(original.total_energy_cost),
            "total_time_cost": negate(original.total_time_cost),
            "total_parking_cost": negate(original.total_parking_cost),
            "total_reservation_cost": negate(original.total_reservation_cost),
            "last_updated": last_updated,
        }
    )


def usage_from_cdr(cdr: Cdr) -> Usage:
    """The CDR's charging periods as usage: each runs until the next one (the last until the end).

    Inside a period, TIME comes first and PARKING_TIME after it; a period with neither is charging
    when it has energy, else parking.
    """
    start = cdr.start_date_time
    ends = [p.start_date_time for p in cdr.charging_periods[1:]] + [cdr.end_date_time]
    intervals: list[Interval] = []
    for number, (period, end) in enumerate(zip(cdr.charging_periods, ends, strict=True), 1):
        low = seconds_between(start, period.start_date_time)
        high = seconds_between(start, end)
        intervals.extend(_period_intervals(number, period, low, high))
    return Usage(start=start, intervals=tuple(i for i in intervals if i.seconds > 0))


def _period_intervals(
    number: int, period: ChargingPeriod, low: Fraction, high: Fraction
) -> list[Interval]:
    t = CdrDimensionType
    energy = frac(period.volume(t.ENERGY) or 0) * 1000
    time = period.volume(t.TIME)
    parking = period.volume(t.PARKING_TIME)
    if energy < 0:
        raise PricingError(f"charging period {number}: negative energy")
    if time is None and parking is None:
        charging_seconds = high - low if energy > 0 else ZERO
    elif time is None:
        charging_seconds = ZERO
    elif parking is None or parking == 0:
        charging_seconds = high - low
    else:
        charging_seconds = min(frac(time) * 3600, high - low)
    if energy > 0 and charging_seconds == 0:
        raise PricingError(f"charging period {number}: energy without charging time")
    power = _range(period, t.MIN_POWER, t.MAX_POWER, t.POWER)
    if power is None and energy > 0:
        power = Range.of(energy * Fraction(36, 10) / charging_seconds)
    current = _range(period, t.MIN_CURRENT, t.MAX_CURRENT, t.CURRENT)
    split = low + charging_seconds
    idle = Range.of(ZERO)
    return [
        Interval(low, split, True, energy, power, current),
        Interval(split, high, False, ZERO, idle, idle),
    ]


def _range(
    period: ChargingPeriod,
    low_type: CdrDimensionType,
    high_type: CdrDimensionType,
    value_type: CdrDimensionType,
) -> Range | None:
    low, high, value = period.volume(low_type), period.volume(high_type), period.volume(value_type)
    low = low if low is not None else (value if value is not None else high)
    high = high if high is not None else (value if value is not None else low)
    if low is None or high is None:
        return None
    return Range(frac(low), frac(high))


def _charging_periods(result: PriceResult, tariff_id: str) -> list[ChargingPeriod]:
    periods = []
    delivered = ZERO
    for period in result.periods:
        before = _kwh(delivered)
        delivered += period.energy_wh
        periods.append(
            ChargingPeriod(
                start_date_time=_at(result, period.start),
                dimensions=_dimensions(period, _kwh(delivered) - before),
                tariff_id=tariff_id,
            )
        )
    return periods


def _dimensions(period: PeriodResult, energy_kwh: Decimal) -> list[CdrDimension]:
    t = CdrDimensionType
    if not period.charging:
        return [CdrDimension(type=t.PARKING_TIME, volume=_hours(period.seconds))]
    dimensions = [
        CdrDimension(type=t.ENERGY, volume=energy_kwh),
        CdrDimension(type=t.TIME, volume=_hours(period.seconds)),
    ]
    for low, high, value in (
        (t.MIN_POWER, t.MAX_POWER, period.power_kw),
        (t.MIN_CURRENT, t.MAX_CURRENT, period.current_a),
    ):
        if value is not None:
            dimensions.append(CdrDimension(type=low, volume=to_decimal(value.low)))
            dimensions.append(CdrDimension(type=high, volume=to_decimal(value.high)))
    return dimensions


def _at(result: PriceResult, offset: Fraction) -> datetime:
    return result.start + timedelta(microseconds=round(offset * 1_000_000))


def _kwh(wh: Fraction) -> Decimal:
    return round_half_up(to_decimal(wh / 1000), 6).normalize()


def _hours(seconds: Fraction) -> Decimal:
    return round_half_up(to_decimal(seconds / 3600), 6).normalize()


def _cost(result: PriceResult, dimension: TariffDimensionType) -> Price | None:
    if not any(p.dimension is dimension for p in result.parts):
        return None
    return _price(result.dimension_amounts(dimension), result.currency)


def _price(amounts: Rounded, currency: str) -> Price:
    return Price(
        excl_vat=units_to_amount(amounts.excl_vat_units, currency),
        incl_vat=units_to_amount(amounts.incl_vat_units, currency),
    )
