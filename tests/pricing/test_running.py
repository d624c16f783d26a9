"""A running price, sample by sample, equals pricing all the samples at once."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargenet.core.pricing import (
    MeterSample,
    PricingError,
    RunningPrice,
    RunningPrices,
    Tariff,
    price,
    price_samples,
    usage_from_samples,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ocpi"


def _component(kind: str, price: str, step: int = 1) -> dict[str, Any]:
    return {"type": kind, "price": price, "vat": "19", "step_size": step}


#: Every kind of restriction, steps, a flat fee and both price bounds in one tariff.
RESTRICTED = Tariff.model_validate(
    {
        "id": "every-rule",
        "currency": "EUR",
        "last_updated": "2024-01-01T00:00:00Z",
        "min_price": {"excl_vat": "1.00"},
        "max_price": {"excl_vat": "90.00"},
        "elements": [
            {"price_components": [_component("FLAT", "0.50")]},
            {
                "price_components": [_component("ENERGY", "0.60", 100)],
                "restrictions": {"start_time": "18:00", "end_time": "23:30", "max_kwh": "20"},
            },
            {
                "price_components": [_component("TIME", "3.00", 300)],
                "restrictions": {"min_duration": 3600, "max_duration": 10800},
            },
            {
                "price_components": [_component("ENERGY", "0.45", 10)],
                "restrictions": {"min_power": "11", "day_of_week": ["SATURDAY", "SUNDAY"]},
            },
            {
                "price_components": [
                    _component("ENERGY", "0.35", 1),
                    _component("PARKING_TIME", "5.00", 900),
                ],
            },
        ],
    }
)


def _tariffs() -> list[Tariff]:
    files = sorted(FIXTURES.glob("tariff_*.json"))
    return [RESTRICTED, *(Tariff.model_validate_json(f.read_bytes()) for f in files)]


def _random_samples(rng: random.Random, start: datetime, count: int) -> list[MeterSample]:
    """Gaps from none to two hours (a session over days and a DST change), charging and parked
    stretches, power reported or not."""
    at, energy = start, Decimal(rng.randint(0, 10_000))
    samples = []
    for _ in range(count):
        samples.append(
            MeterSample(
                timestamp=at,
                energy_wh=energy,
                power_kw=rng.choice([None, Decimal(rng.randint(1, 150))]),
            )
        )
        gap = rng.choice([0, 1, 37, 600, 3600, 7200, rng.randint(1, 5000)])
        at += timedelta(seconds=gap)
        if gap and rng.random() < 0.8:
            energy += Decimal(rng.randint(0, 20_000)) / 2
    return samples


@pytest.mark.parametrize("tariff", _tariffs(), ids=lambda t: t.id)
@pytest.mark.parametrize("seed", range(4))
def test_the_running_price_after_each_sample_equals_pricing_all_of_them(
    tariff: Tariff, seed: int
) -> None:
    rng = random.Random(seed)
    # Saturday before the spring DST change in Berlin, late afternoon: clock, day and DST cuts.
    start = datetime(2024, 3, 30, 16, 0, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 600))
    samples = _random_samples(rng, start, 30)
    running = RunningPrice(tariff, time_zone="Europe/Berlin")
    for index, sample in enumerate(samples, start=1):
        running.add(sample)
        so_far = samples[:index]
        expected = price(tariff, usage_from_samples(so_far), time_zone="Europe/Berlin")
        assert running.result() == expected, f"after sample {index}"
        end = sample.timestamp + timedelta(seconds=rng.randint(0, 4000))
        with_parking = price(tariff, usage_from_samples(so_far, end=end), time_zone="Europe/Berlin")
        assert running.result(end=end) == with_parking, f"after sample {index}, parked"
    assert running.count == len(samples)


def test_a_refused_sample_changes_nothing_and_the_next_good_one_goes_on() -> None:
    start = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)
    good = [
        MeterSample(timestamp=start, energy_wh=Decimal(0)),
        MeterSample(timestamp=start + timedelta(minutes=30), energy_wh=Decimal(5000)),
        MeterSample(timestamp=start + timedelta(minutes=60), energy_wh=Decimal(9000)),
    ]
    running = RunningPrice(RESTRICTED)
    running.add(good[0])
    running.add(good[1])
    before = running.result()
    with pytest.raises(PricingError, match="register went backwards"):
        running.add(MeterSample(timestamp=start + timedelta(minutes=40), energy_wh=Decimal(10)))
    with pytest.raises(PricingError, match="earlier than the sample before it"):
        running.add(MeterSample(timestamp=start, energy_wh=Decimal(6000)))
    assert running.count == 2
    assert running.result() == before
    running.add(good[2])
    assert running.result() == price_samples(RESTRICTED, good)


def test_no_sample_has_no_price() -> None:
    with pytest.raises(PricingError, match="no meter samples"):
        RunningPrice(RESTRICTED).result()


def test_the_cache_hands_out_an_entry_only_for_the_rows_it_was_built_from() -> None:
    cache = RunningPrices(size=2)
    first = RunningPrice(RESTRICTED)
    cache.put("a", first, covering=3)
    assert cache.get("a", covering=3) is first
    # Another replica stored a sample this process never saw: not this entry.
    assert cache.get("a", covering=4) is None
    cache.put("b", RunningPrice(RESTRICTED), covering=1)
    cache.get("a", covering=3)  # used lately: "b" is the oldest now
    cache.put("c", RunningPrice(RESTRICTED), covering=1)
    assert cache.get("b", covering=1) is None
    assert cache.get("a", covering=3) is first
    cache.forget("a")
    assert cache.get("a", covering=3) is None


def test_extended_books_later_samples_on_a_copy_and_refuses_earlier_ones() -> None:
    start = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)

    def at(minutes: int, energy_wh: int) -> MeterSample:
        return MeterSample(
            timestamp=start + timedelta(minutes=minutes), energy_wh=Decimal(energy_wh)
        )

    running = RunningPrice(RESTRICTED)
    running.add(at(0, 0))
    running.add(at(30, 5_000))
    # Not later than the last booked sample: only all the samples in order give the price.
    assert running.extended([at(30, 5_000)]) is None
    assert running.extended([at(60, 9_000), at(10, 1_000)]) is None
    # Out of order among themselves is fine; the original stays as it was.
    extended = running.extended([at(60, 9_000), at(45, 7_000)])
    assert extended is not None and running.count == 2
    assert extended.result() == price_samples(
        RESTRICTED, [at(0, 0), at(30, 5_000), at(45, 7_000), at(60, 9_000)]
    )
    # A register going backwards: refused, or left out as the escrow leaves it out.
    with pytest.raises(PricingError, match="register went backwards"):
        running.extended([at(45, 4_000)])
    dropped = running.extended([at(45, 4_000), at(60, 9_000)], drop_backwards=True)
    assert dropped is not None and dropped.count == 3
    assert dropped.result() == price_samples(RESTRICTED, [at(0, 0), at(30, 5_000), at(60, 9_000)])


#: 0.40 EUR per kWh and 2.00 EUR per parked hour, 19 % VAT: the energy settles to the cent.
PER_KWH = Tariff.model_validate(
    {
        "id": "per-kwh",
        "currency": "EUR",
        "last_updated": "2024-01-01T00:00:00Z",
        "elements": [
            {
                "price_components": [
                    _component("ENERGY", "0.40"),
                    _component("PARKING_TIME", "2.00", 60),
                ]
            }
        ],
    }
)


def _ocpp16_stop(meter_stop: int) -> list[MeterSample]:
    """A 1.6 charger's session: meterStart 350 Wh at 09:00:00, MeterValues at 09:30:00 and, at
    10:00:00, its last MeterValues (12.35 kWh, to 10 Wh, 11 kW) and its StopTransaction (meterStop
    in Wh, no power) on the same second."""
    start = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)
    stop = start + timedelta(hours=1)
    return [
        MeterSample(timestamp=start, energy_wh=Decimal(350), power_kw=Decimal(11)),
        MeterSample(
            timestamp=start + timedelta(minutes=30), energy_wh=Decimal(6_350), power_kw=Decimal(11)
        ),
        MeterSample(timestamp=stop, energy_wh=Decimal(12_350), power_kw=Decimal(11)),
        MeterSample(timestamp=stop, energy_wh=Decimal(meter_stop)),
    ]


@pytest.mark.parametrize(
    ("meter_stop", "delivered_wh"),
    [(12_347, 12_000), (12_350, 12_000), (12_351, 12_001)],
    ids=["stop-below", "stop-equal", "stop-above"],
)
def test_readings_of_one_moment_price_as_one_the_highest_register(
    meter_stop: int, delivered_wh: int
) -> None:
    samples = _ocpp16_stop(meter_stop)
    end = samples[-1].timestamp + timedelta(minutes=15)
    # In the order the charger sent them, and in the escrow's order (by time, then register).
    for ordered in (samples, sorted(samples, key=lambda s: (s.timestamp, s.energy_wh))):
        result = price_samples(PER_KWH, ordered, end=end)
        assert result.energy_wh == delivered_wh
        assert result.charging_seconds == 3600 and result.parking_seconds == 900
        # 12.000 kWh x 0.40 = 4.80 (12.001 kWh: 4.8004) + 0.25 h parked x 2.00 = 0.50, + 19 %
        assert result.total_excl_vat_units == 5_300_000
        assert result.total_incl_vat_units == 6_310_000
        assert [(p.charging, p.energy_wh) for p in result.periods] == [
            (True, delivered_wh),
            (False, 0),
        ]


def test_the_running_price_takes_a_higher_reading_of_the_last_moment_into_its_interval() -> None:
    samples = _ocpp16_stop(12_351)
    running = RunningPrice(PER_KWH)
    for sample in samples[:3]:
        running.add(sample)
    assert running.result().energy_wh == 12_000
    running.add(samples[3])
    assert running.count == 4
    assert running.last == samples[3].model_copy(update={"power_kw": Decimal(11)})
    assert running.result().energy_wh == 12_001
    assert running.result() == price(PER_KWH, usage_from_samples(samples))
    # A lower reading of the same moment does not take the register back.
    running.add(samples[2])
    assert running.result().energy_wh == 12_001
    # Nor does a later one: refused, and the price stays.
    later = samples[3].timestamp + timedelta(minutes=1)
    with pytest.raises(PricingError, match="register went backwards"):
        running.add(MeterSample(timestamp=later, energy_wh=Decimal(12_350)))
    running.add(MeterSample(timestamp=later, energy_wh=Decimal(12_351)))
    assert running.result() == price_samples(PER_KWH, [*samples, samples[2]], end=later)
