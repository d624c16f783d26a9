"""Every restriction, clamp, VAT and rounding rule of the engine, beyond the OCPI examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from chargenet.core.pricing import (
    MeterSample,
    PriceResult,
    PricingError,
    Rounded,
    Tariff,
    TariffDimensionType,
    currency_units,
    minor_unit,
    price_samples,
    to_units,
)
from chargenet.core.pricing.money import to_decimal

D = TariffDimensionType


def tariff(elements: list[dict[str, Any]], **extra: Any) -> Tariff:
    return Tariff.model_validate(
        {"id": "t", "currency": "EUR", "elements": elements, "last_updated": "2024-01-01T00:00:00Z"}
        | extra
    )


def energy(
    price: str, vat: str | None = "20", step: int = 1, **restrictions: Any
) -> dict[str, Any]:
    component: dict[str, Any] = {"type": "ENERGY", "price": price, "step_size": step}
    if vat is not None:
        component["vat"] = vat
    element: dict[str, Any] = {"price_components": [component]}
    if restrictions:
        element["restrictions"] = restrictions
    return element


def time_el(price: str, step: int = 1, **restrictions: Any) -> dict[str, Any]:
    element: dict[str, Any] = {
        "price_components": [{"type": "TIME", "price": price, "vat": "20", "step_size": step}]
    }
    if restrictions:
        element["restrictions"] = restrictions
    return element


def run(
    t: Tariff,
    start: datetime,
    minutes: float,
    kwh: str,
    park: float = 0,
    time_zone: str = "UTC",
    **sample: Any,
) -> PriceResult:
    stop = start + timedelta(minutes=minutes)
    samples = [
        MeterSample(timestamp=start, energy_wh=Decimal(0), **sample),
        MeterSample(timestamp=stop, energy_wh=Decimal(kwh) * 1000, **sample),
    ]
    return price_samples(t, samples, end=stop + timedelta(minutes=park), time_zone=time_zone)


def by_element(result: PriceResult, dimension: TariffDimensionType) -> dict[int, Fraction]:
    return {p.element_index: p.billed for p in result.parts if p.dimension is dimension}


def excl(result: PriceResult) -> Decimal:
    return to_decimal(result.total_excl_vat)


NIGHT = tariff([energy("0.20", start_time="22:00", end_time="06:00"), energy("0.40")])


def test_time_of_day_window_crossing_midnight_entered_mid_session() -> None:
    # 21:30-22:30 at an even 10 kW: 5 kWh before 22:00 at day price, 5 kWh after at night price
    result = run(NIGHT, datetime(2024, 3, 4, 21, 30, tzinfo=UTC), 60, "10")
    assert by_element(result, D.ENERGY) == {1: 5000, 0: 5000}
    assert excl(result) == Decimal("3.0")
    assert len(result.periods) == 2


def test_time_of_day_window_crossing_midnight_left_in_the_morning() -> None:
    # 05:00-07:00: the 22:00-06:00 window covers the first hour only, across a date change earlier
    result = run(NIGHT, datetime(2024, 3, 5, 5, 0, tzinfo=UTC), 120, "20")
    assert by_element(result, D.ENERGY) == {0: 10000, 1: 10000}


def test_time_of_day_read_in_the_location_time_zone() -> None:
    # 20:30-21:30 UTC is 22:30-23:30 in Berlin (summer time): night price there, day price in UTC
    start = datetime(2024, 7, 1, 20, 30, tzinfo=UTC)
    assert by_element(run(NIGHT, start, 60, "10", time_zone="Europe/Berlin"), D.ENERGY) == {
        0: 10000
    }
    assert by_element(run(NIGHT, start, 60, "10"), D.ENERGY) == {1: 10000}


def test_start_and_end_date_end_exclusive() -> None:
    promo = tariff([energy("0.10", start_date="2024-05-01", end_date="2024-05-02"), energy("0.30")])
    # 23:00 on 30 April to 01:00 on 2 May: promo only on 1 May, 24 of the 26 hours
    result = run(promo, datetime(2024, 4, 30, 23, 0, tzinfo=UTC), 26 * 60, "26")
    assert by_element(result, D.ENERGY) == {1: 2000, 0: 24000}


def test_day_of_week_across_sunday_midnight() -> None:
    weekend = tariff([time_el("1.00", day_of_week=["SATURDAY", "SUNDAY"]), time_el("3.00")])
    # Sunday 23:00 to Monday 01:00
    result = run(weekend, datetime(2024, 6, 9, 23, 0, tzinfo=UTC), 120, "20")
    assert by_element(result, D.TIME) == {0: 3600, 1: 3600}
    assert excl(result) == Decimal("4")


def test_min_and_max_kwh_split_inside_one_sample_interval() -> None:
    first_kwh_free = tariff([energy("0.00", max_kwh="1.0"), energy("0.20", min_kwh="1.0")])
    result = run(first_kwh_free, datetime(2024, 6, 3, 10, tzinfo=UTC), 60, "20")
    assert by_element(result, D.ENERGY) == {0: 1000, 1: 19000}
    assert excl(result) == Decimal("3.8")
    # the split is at the exact instant the 1 kWh was reached: 3 of 60 minutes
    assert [p.end - p.start for p in result.periods] == [180, 3420]


def test_min_and_max_current_follow_the_current_as_it_changes() -> None:
    t = tariff([time_el("1.00", max_current="32"), time_el("2.00", min_current="32")])
    start = datetime(2024, 6, 3, 10, tzinfo=UTC)
    samples = [
        MeterSample(timestamp=start, energy_wh=Decimal(0), current_a=Decimal(48)),
        MeterSample(
            timestamp=start + timedelta(hours=1), energy_wh=Decimal(30000), current_a=Decimal(16)
        ),
        MeterSample(timestamp=start + timedelta(hours=2), energy_wh=Decimal(40000)),
    ]
    result = price_samples(t, samples)
    assert by_element(result, D.TIME) == {0: 3600, 1: 3600}
    assert excl(result) == Decimal("3")


def test_current_restriction_does_not_match_when_current_is_unknown() -> None:
    t = tariff([time_el("9.00", max_current="32"), time_el("1.00")])
    result = run(t, datetime(2024, 6, 3, 10, tzinfo=UTC), 60, "10")
    assert by_element(result, D.TIME) == {1: 3600}


def test_min_power_from_the_average_when_the_charger_reports_none() -> None:
    t = tariff([energy("0.60", min_power="50"), energy("0.40")])
    fast = run(t, datetime(2024, 6, 3, 10, tzinfo=UTC), 30, "30")  # 60 kW average
    slow = run(t, datetime(2024, 6, 3, 10, tzinfo=UTC), 60, "11")  # 11 kW
    assert by_element(fast, D.ENERGY) == {0: 30000}
    assert by_element(slow, D.ENERGY) == {1: 11000}


def test_min_duration_prices_the_tail_of_the_session() -> None:
    t = tariff([time_el("0.00", max_duration=3600), time_el("6.00", min_duration=3600)])
    result = run(t, datetime(2024, 6, 3, 10, tzinfo=UTC), 90, "30")
    assert by_element(result, D.TIME) == {0: 3600, 1: 1800}
    assert excl(result) == Decimal("3")


def test_reservation_elements_never_price_a_charging_session() -> None:
    t = tariff(
        [
            {
                "price_components": [{"type": "TIME", "price": "50", "step_size": 60}],
                "restrictions": {"reservation": "RESERVATION"},
            },
            time_el("2.00"),
        ]
    )
    assert by_element(run(t, datetime(2024, 6, 3, tzinfo=UTC), 60, "10"), D.TIME) == {1: 3600}


def test_no_matching_element_makes_a_dimension_free() -> None:
    t = tariff([time_el("2.00", start_time="08:00", end_time="09:00")])
    result = run(t, datetime(2024, 6, 3, 10, tzinfo=UTC), 60, "10")
    assert result.parts == ()
    assert result.total_incl_vat_units == 0


def test_flat_is_charged_once_even_across_periods() -> None:
    t = tariff(
        [
            {
                "price_components": [
                    {"type": "FLAT", "price": "1.00", "vat": "20", "step_size": 1},
                    {"type": "ENERGY", "price": "0.10", "step_size": 1},
                ],
                "restrictions": {"end_time": "12:00"},
            },
            {
                "price_components": [
                    {"type": "FLAT", "price": "5.00", "step_size": 1},
                    {"type": "ENERGY", "price": "0.20", "step_size": 1},
                ]
            },
        ]
    )
    result = run(t, datetime(2024, 6, 3, 11, tzinfo=UTC), 120, "20")
    flats = [p for p in result.parts if p.dimension is D.FLAT]
    assert [(p.element_index, int(p.billed)) for p in flats] == [(0, 1)]
    assert excl(result) == Decimal("1") + Decimal("0.1") * 10 + Decimal("0.2") * 10


def test_step_size_applies_when_the_new_element_has_no_such_component() -> None:
    # parking priced until 20:00 in 15-minute steps, free afterwards: 19:40 charge 10 min, park
    # 19:50-20:10 -> 10 minutes before 20:00 are billed as one 15-minute step at 1.00/h
    t = tariff(
        [
            {
                "price_components": [
                    {"type": "TIME", "price": "0", "step_size": 1},
                    {"type": "PARKING_TIME", "price": "1.00", "step_size": 900},
                ],
                "restrictions": {"end_time": "20:00"},
            },
            {"price_components": [{"type": "TIME", "price": "0", "step_size": 1}]},
        ]
    )
    result = run(t, datetime(2024, 6, 3, 19, 40, tzinfo=UTC), 10, "2", park=20)
    assert by_element(result, D.PARKING_TIME) == {0: 900}
    assert excl(result) == Decimal("0.25")


def test_energy_is_billed_in_whole_wh() -> None:
    # the spec's "115.2 Wh ... billed for 116 Wh, ... 0.029 euro"
    t = tariff([energy("0.25", vat=None)])
    result = run(t, datetime(2024, 6, 3, tzinfo=UTC), 1, "0.1152")
    assert result.parts[0].billed == 116
    assert excl(result) == Decimal("0.029")


def test_vat_per_component_and_missing_vat_means_none() -> None:
    t = tariff(
        [
            {
                "price_components": [
                    {"type": "FLAT", "price": "1.00", "vat": "7", "step_size": 1},
                    {"type": "ENERGY", "price": "0.30", "vat": "19", "step_size": 1},
                    {"type": "TIME", "price": "1.00", "step_size": 1},
                ]
            }
        ]
    )
    result = run(t, datetime(2024, 6, 3, tzinfo=UTC), 60, "10")
    assert excl(result) == Decimal("5")
    assert to_decimal(result.total_incl_vat) == Decimal("1.07") + Decimal("3.57") + Decimal("1")
    assert [p.vat_rate for p in result.parts] == [Decimal(7), Decimal(19), None]


def test_min_price_without_incl_vat_scales_by_the_session_vat() -> None:
    t = tariff([energy("0.25", vat="10")], min_price={"excl_vat": "2.00"})
    result = run(t, datetime(2024, 6, 3, tzinfo=UTC), 10, "1")
    assert (excl(result), to_decimal(result.total_incl_vat)) == (Decimal("2"), Decimal("2.2"))


def test_max_price_incl_vat_bound_can_bind_alone() -> None:
    # excl 9.50 stays below the 10.00 excl bound, incl 11.40 (20% VAT) is capped at 11.00
    t = tariff([energy("0.38", vat="20")], max_price={"excl_vat": "10.00", "incl_vat": "11.00"})
    result = run(t, datetime(2024, 6, 3, tzinfo=UTC), 60, "25")
    assert (excl(result), to_decimal(result.total_incl_vat)) == (Decimal("9.5"), Decimal("11"))
    assert result.price_limit == "max_price"
    # the clamp is one adjustment: nothing off excl. VAT, 0.40 off the VAT
    assert result.adjustment == Rounded(0, -400_000)
    assert result.total_incl_vat_units == 11_000_000


def test_totals_round_once_to_cents_half_up_then_convert_exactly_to_units() -> None:
    # 1.00/h for 18 s is exactly 0.005 EUR: half a cent rounds up to 0.01 = 10_000 units.
    # incl. 20 % VAT it is 0.006, also 0.01: VAT is the difference of the rounded totals, 0.
    t = tariff([time_el("1.00")])
    start = datetime(2024, 6, 3, tzinfo=UTC)
    result = run(t, start, 18 / 60, "0.001")
    assert (result.total_excl_vat, result.total_incl_vat) == (Fraction(1, 200), Fraction(3, 500))
    assert (result.total_excl_vat_units, result.vat_units, result.total_incl_vat_units) == (
        10_000,
        0,
        10_000,
    )
    # 7 s is 0.00194... EUR: under half a cent, nothing is charged (the token's 6 decimals
    # would have charged 1944 units, an amount no invoice can show).
    assert run(t, start, 7 / 60, "0.001").total_incl_vat_units == 0
    assert currency_units(Fraction("14.125"), "EUR") == 14_130_000
    assert currency_units(Fraction("0.004999999"), "EUR") == 0
    assert currency_units(Fraction("-0.015"), "EUR") == -20_000  # half away from zero
    assert to_units(Fraction(3, 2_000_000)) == 2  # the token-level conversion is unchanged


def test_many_small_parts_round_once_not_per_part() -> None:
    # three parts of 0.004 EUR each: rounding each would give 0.00, the total 0.012 gives 0.01.
    # The cent goes to the part with the largest remainder (a tie: the first, FLAT).
    t = tariff(
        [
            {
                "price_components": [
                    {"type": "FLAT", "price": "0.004", "step_size": 1},
                    {"type": "ENERGY", "price": "0.004", "step_size": 1},
                    {"type": "TIME", "price": "0.004", "step_size": 1},
                ]
            },
        ]
    )
    result = run(t, datetime(2024, 6, 3, tzinfo=UTC), 60, "1")
    assert result.total_excl_vat == Fraction(12, 1000)
    assert result.total_excl_vat_units == 10_000
    assert [a.excl_vat_units for a in result.part_amounts] == [10_000, 0, 0]


def test_vat_per_rate_splits_the_rounded_totals_and_adds_up() -> None:
    # FLAT 0.55 at 7 %, 10 kWh at 0.333 at 19 %, 1 h at 1.005 without VAT:
    # exact excl 0.55 + 3.33 + 1.005 = 4.885 -> 4.89; incl 0.5885 + 3.9627 + 1.005 = 5.5562
    # -> 5.56; VAT 0.67. Per rate (largest remainder of the exact amounts): taxable 1.01 / 0.55
    # / 3.33 and VAT 0 / 0.04 / 0.63 (= 0.0385 and 0.6327 rounded, as rate x base says).
    t = tariff(
        [
            {
                "price_components": [
                    {"type": "FLAT", "price": "0.55", "vat": "7", "step_size": 1},
                    {"type": "ENERGY", "price": "0.333", "vat": "19", "step_size": 1},
                    {"type": "TIME", "price": "1.005", "step_size": 1},
                ]
            }
        ]
    )
    result = run(t, datetime(2024, 6, 3, tzinfo=UTC), 60, "10")
    assert (result.total_excl_vat, result.total_incl_vat) == (
        Fraction("4.885"),
        Fraction("5.5562"),
    )
    assert (result.total_excl_vat_units, result.vat_units, result.total_incl_vat_units) == (
        4_890_000,
        670_000,
        5_560_000,
    )
    rates = [
        (r.rate, r.amounts.excl_vat_units, r.amounts.vat_units) for r in result.rounding.vat_rates
    ]
    assert rates == [
        (None, 1_010_000, 0),
        (Decimal(7), 550_000, 40_000),
        (Decimal(19), 3_330_000, 630_000),
    ]
    parts = [(a.excl_vat_units, a.vat_units) for a in result.part_amounts]
    assert parts == [(550_000, 40_000), (3_330_000, 630_000), (1_010_000, 0)]
    assert sum(result.part_amounts, Rounded(0, 0)) == result.rounding.total


def test_currencies_round_to_their_own_minor_unit() -> None:
    start = datetime(2024, 6, 3, tzinfo=UTC)
    # JPY has no minor unit: 7.4 kWh at 39 = 288.6 -> 289 yen; incl. 10 % 317.46 -> 317 yen
    yen = run(tariff([energy("39", vat="10")], currency="JPY"), start, 60, "7.4")
    assert (yen.total_excl_vat_units, yen.total_incl_vat_units) == (289_000_000, 317_000_000)
    assert yen.total_incl_vat_decimal.as_tuple() == Decimal("317").as_tuple()
    # KWD has three decimals: 7.4 kWh at 0.1234 = 0.91316 -> 0.913
    dinar = run(tariff([energy("0.1234", vat=None)], currency="KWD"), start, 60, "7.4")
    assert dinar.total_incl_vat_units == 913_000
    assert str(dinar.total_incl_vat_decimal) == "0.913"
    assert str(run(tariff([energy("0.25")]), start, 60, "7.4").total_incl_vat_decimal) == "2.22"
    with pytest.raises(PricingError, match="unknown currency 'XYZ'"):
        run(tariff([energy("0.25")], currency="XYZ"), start, 60, "1")
    assert (minor_unit("EUR"), minor_unit("JPY"), minor_unit("BHD")) == (2, 0, 3)


def test_bad_usage_is_refused_with_a_reason() -> None:
    start = datetime(2024, 6, 3, tzinfo=UTC)
    t = tariff([energy("0.25")])
    with pytest.raises(PricingError, match="went backwards"):
        price_samples(
            t,
            [
                MeterSample(timestamp=start, energy_wh=Decimal(10)),
                MeterSample(timestamp=start + timedelta(minutes=1), energy_wh=Decimal(5)),
            ],
        )
    with pytest.raises(PricingError, match="no meter samples"):
        price_samples(t, [])
    not_yet = tariff([energy("0.25")], start_date_time="2030-01-01T00:00:00Z")
    with pytest.raises(PricingError, match="not in force"):
        run(not_yet, start, 10, "1")
    with pytest.raises(PricingError, match="tax_included"):
        run(tariff([energy("0.25")], tax_included="YES"), start, 10, "1")
