"""The OCPI 2.2.1 Tariff object (plus 2.3's ``preauthorize_amount`` and ``tax_included``).

Unknown fields are refused (``extra="forbid"``): a misspelt restriction such as
``tariff_restrictions`` would otherwise be dropped silently and the element would price every
session. Each check below names the field it rejects.
"""

from __future__ import annotations

import functools
import json
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from chargenet.core.pricing.money import TOKEN_SCALE

TIME_OF_DAY = r"^([0-1][0-9]|2[0-3]):[0-5][0-9]$"
DATE = r"^([12][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"

TimeOfDay = Annotated[str, StringConstraints(pattern=TIME_OF_DAY)]
DateString = Annotated[str, StringConstraints(pattern=DATE)]
NonNegative = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]

#: The escrow locks and settles a session in a uint96 of token base units.
MAX_LOCK_UNITS = 2**96 - 1
#: The largest price (per unit, or a tariff's min/max/preauthorized amount), in the currency: one
#: unit of it with 100 % VAT still fits the escrow's uint96 in base units. Anything above could
#: never be locked (every session at the station failed), and it is absurd anyway (~4e22 EUR).
MAX_PRICE = Decimal(MAX_LOCK_UNITS // (2 * TOKEN_SCALE))
#: Elements of a tariff: every meter value of every session is priced through all of them, and a
#: real tariff has a handful (a weekly time-of-use grid of hours is 168).
MAX_ELEMENTS = 256
#: Price components of an element: OCPI has four dimensions and the engine reads the first of
#: each; a few spare for what a CPO's system writes twice.
MAX_COMPONENTS = 16
#: Display texts of a tariff: one per language.
MAX_ALT_TEXTS = 64
#: Restriction values, above what any session reaches: a restriction beyond them never applies
#: (or always does) and only cuts every session priced at the tariff once more. In kWh: ten
#: times the largest battery on the road (a truck's, ~1 MWh).
MAX_KWH = 10_000
#: In kW and A: above the Megawatt Charging System's 3.75 MW and 3,000 A.
MAX_POWER_KW = 10_000
MAX_CURRENT_A = 10_000
#: In seconds: 30 days, the longest escrow expiry the wallet gives a session (it is stopped
#: before its expiry).
MAX_DURATION_S = 30 * 24 * 3600


def _each_day_once(days: list[DayOfWeek]) -> list[DayOfWeek]:
    for day in set(days):
        if days.count(day) > 1:
            raise ValueError(f"lists {day.value} twice")
    return days


def _at_most_max_price(value: Decimal) -> Decimal:
    if value > MAX_PRICE:
        raise ValueError(
            f"at most {MAX_PRICE}: a price must fit the escrow's uint96 of token base units"
        )
    return value


Amount = Annotated[Decimal, Field(allow_inf_nan=False), AfterValidator(_at_most_max_price)]
PriceAmount = Annotated[NonNegative, AfterValidator(_at_most_max_price)]


class OcpiModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TariffDimensionType(StrEnum):
    ENERGY = "ENERGY"
    FLAT = "FLAT"
    PARKING_TIME = "PARKING_TIME"
    TIME = "TIME"


class DayOfWeek(StrEnum):
    MONDAY = "MONDAY"
    TUESDAY = "TUESDAY"
    WEDNESDAY = "WEDNESDAY"
    THURSDAY = "THURSDAY"
    FRIDAY = "FRIDAY"
    SATURDAY = "SATURDAY"
    SUNDAY = "SUNDAY"

    @classmethod
    def of(cls, day: date) -> DayOfWeek:
        return list(cls)[day.weekday()]


class ReservationRestrictionType(StrEnum):
    RESERVATION = "RESERVATION"
    RESERVATION_EXPIRES = "RESERVATION_EXPIRES"


class TariffType(StrEnum):
    AD_HOC_PAYMENT = "AD_HOC_PAYMENT"
    PROFILE_CHEAP = "PROFILE_CHEAP"
    PROFILE_FAST = "PROFILE_FAST"
    PROFILE_GREEN = "PROFILE_GREEN"
    REGULAR = "REGULAR"


class TaxIncluded(StrEnum):
    """OCPI 2.3: whether component prices include taxes. Only ``NO`` can be priced here."""

    YES = "YES"
    NO = "NO"
    NOT_APPLICABLE = "N/A"


class Price(OcpiModel):
    """OCPI Price: an amount excluding VAT and, optionally, including it."""

    excl_vat: Decimal = Field(allow_inf_nan=False)
    incl_vat: Decimal | None = Field(default=None, allow_inf_nan=False)


class TariffPrice(Price):
    """A tariff's ``min_price`` or ``max_price``: bounded like a price (a CDR's totals, also
    Prices, are what was settled, so the escrow bounded them already)."""

    excl_vat: Amount
    incl_vat: Amount | None = None


class DisplayText(OcpiModel):
    language: Annotated[str, StringConstraints(min_length=2, max_length=2)]
    text: Annotated[str, StringConstraints(max_length=512)]


class PriceComponent(OcpiModel):
    type: TariffDimensionType
    price: PriceAmount
    vat: NonNegative | None = None
    step_size: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _step_size_positive(self) -> Self:
        if self.type is not TariffDimensionType.FLAT and self.step_size < 1:
            raise ValueError(f"step_size must be at least 1 for a {self.type} price component")
        if self.vat is not None and self.vat > 100:
            raise ValueError("vat is a percentage and must be between 0 and 100")
        return self


Kwh = Annotated[NonNegative, Field(le=MAX_KWH)]
Power = Annotated[NonNegative, Field(le=MAX_POWER_KW)]
Current = Annotated[NonNegative, Field(le=MAX_CURRENT_A)]
Duration = Annotated[int, Field(ge=0, le=MAX_DURATION_S)]


class TariffRestrictions(OcpiModel):
    start_time: TimeOfDay | None = None
    end_time: TimeOfDay | None = None
    start_date: DateString | None = None
    end_date: DateString | None = None
    min_kwh: Kwh | None = None
    max_kwh: Kwh | None = None
    min_current: Current | None = None
    max_current: Current | None = None
    min_power: Power | None = None
    max_power: Power | None = None
    min_duration: Duration | None = None
    max_duration: Duration | None = None
    day_of_week: Annotated[
        list[DayOfWeek], Field(max_length=len(DayOfWeek)), AfterValidator(_each_day_once)
    ] = Field(default_factory=list)
    reservation: ReservationRestrictionType | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for name in ("start_date", "end_date"):
            value = getattr(self, name)
            if value is not None:
                try:
                    date.fromisoformat(value)
                except ValueError:
                    raise ValueError(f"{name} {value!r} is not a calendar date") from None
        pairs = [
            ("min_kwh", "max_kwh"),
            ("min_current", "max_current"),
            ("min_power", "max_power"),
            ("min_duration", "max_duration"),
            ("start_date", "end_date"),
        ]
        for low_name, high_name in pairs:
            low, high = getattr(self, low_name), getattr(self, high_name)
            if low is not None and high is not None and not low < high:
                raise ValueError(f"{low_name} ({low}) must be below {high_name} ({high})")
        return self

    @property
    def start_time_of_day(self) -> time | None:
        return time.fromisoformat(self.start_time) if self.start_time else None

    @property
    def end_time_of_day(self) -> time | None:
        return time.fromisoformat(self.end_time) if self.end_time else None


class TariffElement(OcpiModel):
    price_components: Annotated[
        list[PriceComponent], Field(min_length=1, max_length=MAX_COMPONENTS)
    ]
    restrictions: TariffRestrictions | None = None

    @model_validator(mode="after")
    def _reservation_dimensions(self) -> Self:
        if self.restrictions is not None and self.restrictions.reservation is not None:
            allowed = {TariffDimensionType.FLAT, TariffDimensionType.TIME}
            for component in self.price_components:
                if component.type not in allowed:
                    raise ValueError(
                        f"a reservation element may only have FLAT and TIME components, "
                        f"not {component.type}"
                    )
        return self

    def component(self, dimension: TariffDimensionType) -> PriceComponent | None:
        """The first component of ``dimension`` in this element (OCPI: one per dimension)."""
        for component in self.price_components:
            if component.type is dimension:
                return component
        return None


class Tariff(OcpiModel):
    # country_code and party_id are mandatory in 2.2.1, but tariffs embedded in CDRs (and several
    # of the spec's own examples) omit them, so a missing value is accepted.
    country_code: Annotated[str, StringConstraints(min_length=2, max_length=2)] | None = None
    party_id: Annotated[str, StringConstraints(min_length=3, max_length=3)] | None = None
    id: Annotated[str, StringConstraints(min_length=1, max_length=36)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    type: TariffType | None = None
    tariff_alt_text: list[DisplayText] = Field(default_factory=list, max_length=MAX_ALT_TEXTS)
    tariff_alt_url: str | None = None
    min_price: TariffPrice | None = None
    max_price: TariffPrice | None = None
    elements: Annotated[list[TariffElement], Field(min_length=1, max_length=MAX_ELEMENTS)]
    start_date_time: AwareDatetime | None = None
    end_date_time: AwareDatetime | None = None
    energy_mix: dict[str, Any] | None = None
    last_updated: AwareDatetime
    # OCPI 2.3 additions.
    tax_included: TaxIncluded | None = None
    preauthorize_amount: PriceAmount | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for name in ("min_price", "max_price"):
            bound: TariffPrice | None = getattr(self, name)
            if bound is None:
                continue
            if bound.excl_vat < 0 or (bound.incl_vat is not None and bound.incl_vat < 0):
                raise ValueError(f"{name} must not be negative")
            if bound.incl_vat is not None and bound.incl_vat < bound.excl_vat:
                raise ValueError(f"{name}.incl_vat must not be below {name}.excl_vat")
        if self.min_price is not None and self.max_price is not None:
            if self.min_price.excl_vat > self.max_price.excl_vat:
                raise ValueError("min_price.excl_vat must not exceed max_price.excl_vat")
            low, high = self.min_price.incl_vat, self.max_price.incl_vat
            if low is not None and high is not None and low > high:
                raise ValueError("min_price.incl_vat must not exceed max_price.incl_vat")
        if (
            self.start_date_time is not None
            and self.end_date_time is not None
            and self.start_date_time >= self.end_date_time
        ):
            raise ValueError("start_date_time must be before end_date_time")
        return self

    def is_valid_at(self, moment: datetime) -> bool:
        """Whether the tariff is in force at ``moment`` (the session start, by OCPI's note)."""
        if self.start_date_time is not None and moment < self.start_date_time:
            return False
        return self.end_date_time is None or moment < self.end_date_time


@functools.lru_cache(maxsize=256)
def tariff_of(document: str) -> Tariff:
    """A tariff's JSON document, validated once per distinct text: every meter value and every
    settlement of a station's sessions prices with the same one (the models are only read)."""
    return Tariff.model_validate(json.loads(document))
