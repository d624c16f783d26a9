"""CDRs built from meter samples, re-priced from their periods, hashed, credited; model errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from eth_utils.crypto import keccak
from pydantic import ValidationError

from chargenet.cli.main import main as cli
from chargenet.core.pricing import (
    TOKEN_SCALE,
    AuthMethod,
    Cdr,
    CdrDimensionType,
    CdrLocation,
    CdrToken,
    DayOfWeek,
    MeterSample,
    Price,
    Tariff,
    TokenType,
    build_cdr,
    canonical_json,
    cdr_hash,
    credit_cdr,
    price_cdr,
    price_samples,
)
from chargenet.core.pricing.canonical import _canonical, _encode
from chargenet.core.pricing.cdr import GeoLocation

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ocpi"
START = datetime(2024, 6, 3, 16, 40, tzinfo=UTC)


def load_tariff(name: str) -> Tariff:
    return Tariff.model_validate_json((FIXTURES / name).read_bytes())


def samples_crossing_power_and_clock() -> list[MeterSample]:
    """6 kW, then 48 kW, then 4 kW: crosses both max_power bounds of the tariff."""
    return [
        MeterSample(timestamp=START, energy_wh=Decimal(0), power_kw=Decimal(6)),
        MeterSample(
            timestamp=START + timedelta(minutes=10), energy_wh=Decimal(1000), power_kw=Decimal(48)
        ),
        MeterSample(
            timestamp=START + timedelta(minutes=60),
            energy_wh=Decimal("41000.5"),
            power_kw=Decimal(4),
        ),
        MeterSample(timestamp=START + timedelta(minutes=67, seconds=30), energy_wh=Decimal(41500)),
    ]


def make_cdr(tariff: Tariff, samples: list[MeterSample], end: datetime | None = None) -> Cdr:
    result = price_samples(tariff, samples, end=end)
    return build_cdr(
        cdr_id="cdr-1",
        country_code="DE",
        party_id="CHN",
        session_id="s-1",
        token=CdrToken(
            country_code="DE",
            party_id="CHN",
            uid="driver-1",
            type=TokenType.APP_USER,
            contract_id="DE-CHN-driver-1",
        ),
        auth_method=AuthMethod.COMMAND,
        location=CdrLocation(
            id="LOC1",
            address="Hauptstr. 1",
            city="Berlin",
            country="DEU",
            coordinates=GeoLocation(latitude="52.520008", longitude="13.404954"),
            evse_uid="E1",
            evse_id="DE*CHN*E1",
            connector_id="1",
            connector_standard="IEC_62196_T2_COMBO",
            connector_format="CABLE",
            connector_power_type="DC",
        ),
        tariff=tariff,
        result=result,
        last_updated=START + timedelta(hours=2),
    )


def test_cdr_from_samples_reprices_to_the_same_units() -> None:
    for name, end in (
        ("tariff_max_power.json", None),
        ("tariff_step_size.json", START + timedelta(minutes=90)),
    ):
        tariff = load_tariff(name)
        samples = samples_crossing_power_and_clock()
        settled = price_samples(tariff, samples, end=end)
        cdr = make_cdr(tariff, samples, end)
        again = price_cdr(tariff, Cdr.model_validate_json(cdr.model_dump_json()))
        assert again.total_incl_vat_units == settled.total_incl_vat_units, name
        assert again.total_excl_vat_units == settled.total_excl_vat_units, name
        assert cdr.total_cost.incl_vat == settled.total_incl_vat_decimal
        assert cdr.total_cost.incl_vat.as_tuple().exponent == -2  # EUR amounts carry cents


def test_cdr_periods_follow_the_active_element() -> None:
    cdr = make_cdr(load_tariff("tariff_max_power.json"), samples_crossing_power_and_clock())
    energies = [p.dimensions[0].volume for p in cdr.charging_periods]
    assert energies == [Decimal(1), Decimal("40.0005"), Decimal("0.4995")]
    assert cdr.total_energy == Decimal("41.5")
    assert sum(energies, Decimal(0)) == cdr.total_energy
    # 40000.5 Wh at 0.50 and 1499.5 Wh at 0.20: the half Wh moved between elements, and the
    # session total (41500 Wh) is whole, so no step rounding adds anything. Exactly 20.30015 EUR
    # (24.36018 incl. 20 % VAT); the CDR carries the totals rounded once to cents.
    exact = price_samples(load_tariff("tariff_max_power.json"), samples_crossing_power_and_clock())
    assert (exact.total_excl_vat, exact.total_incl_vat) == (
        Fraction("20.30015"),
        Fraction("24.36018"),
    )
    assert cdr.total_cost == Price(excl_vat=Decimal("20.30"), incl_vat=Decimal("24.36"))
    assert cdr.total_energy_cost == cdr.total_cost  # the only priced dimension


def test_cdr_dimension_costs_add_up_to_the_total_in_cents() -> None:
    # three dimensions with sub-cent exact costs: each is a share of the rounded total, so
    # they add up to it exactly (rounding each on its own could be a cent off)
    tariff = Tariff.model_validate(
        {
            "id": "t",
            "currency": "EUR",
            "last_updated": "2024-01-01T00:00:00Z",
            "elements": [
                {
                    "price_components": [
                        {"type": "FLAT", "price": "0.345", "vat": "19", "step_size": 1},
                        {"type": "ENERGY", "price": "0.3333", "vat": "19", "step_size": 1},
                        {"type": "PARKING_TIME", "price": "1.005", "vat": "19", "step_size": 60},
                    ]
                }
            ],
        }
    )
    samples = samples_crossing_power_and_clock()
    cdr = make_cdr(tariff, samples, START + timedelta(minutes=90))
    costs = [cdr.total_fixed_cost, cdr.total_energy_cost, cdr.total_parking_cost]
    assert all(c is not None for c in costs)
    for field in ("excl_vat", "incl_vat"):
        values = [getattr(c, field) for c in costs]
        assert all(v.as_tuple().exponent == -2 for v in values), values
        assert sum(values, Decimal(0)) == getattr(cdr.total_cost, field)
    # exact 0.345 + 13.83195 + 0.38525 (23 min) = 14.5622 -> 14.56; rounded one by one they
    # would be 0.35 + 13.83 + 0.39 = 14.57. The largest remainders (0.525, 0.5) get the cents.
    assert [c.excl_vat for c in costs if c is not None] == [
        Decimal("0.34"),
        Decimal("13.83"),
        Decimal("0.39"),
    ]
    result = price_samples(tariff, samples, end=START + timedelta(minutes=90))
    assert result.total_excl_vat == Fraction("14.5622")
    assert cdr.total_cost.incl_vat == result.total_incl_vat_decimal == Decimal("17.33")


def test_cdr_total_time_is_the_whole_session_and_parking_a_part_of_it() -> None:
    # OCPI 2.2.1 CDR: total_time is the session's whole duration (charging and not charging),
    # total_parking_time the part not charging; in the periods, TIME is charging and
    # PARKING_TIME is not. 67.5 min charging, then parked until 90 min after the start.
    tariff = load_tariff("tariff_step_size.json")
    end = START + timedelta(minutes=90)
    cdr = make_cdr(tariff, samples_crossing_power_and_clock(), end)
    assert (cdr.start_date_time, cdr.end_date_time) == (START, end)
    assert cdr.total_time == Decimal("1.5")
    assert cdr.total_parking_time == Decimal("0.375")

    def volumes(kind: CdrDimensionType) -> Decimal:
        found = (p.volume(kind) for p in cdr.charging_periods)
        return sum((v for v in found if v is not None), Decimal(0))

    assert volumes(CdrDimensionType.TIME) == Decimal("1.125")
    assert volumes(CdrDimensionType.PARKING_TIME) == cdr.total_parking_time
    assert price_samples(tariff, samples_crossing_power_and_clock(), end=end).to_json()[
        "total_time"
    ] == Decimal("1.5")
    # Without parking, the whole session is charging time.
    charged = make_cdr(tariff, samples_crossing_power_and_clock())
    assert (charged.total_time, charged.total_parking_time) == (Decimal("1.125"), Decimal(0))


def test_cdr_hash_is_keccak_of_the_documented_canonical_form() -> None:
    cdr = make_cdr(load_tariff("tariff_max_power.json"), samples_crossing_power_and_clock())
    canonical = canonical_json(cdr)
    assert b" " not in canonical.replace(b"Hauptstr. 1", b"")
    assert canonical.startswith(b'{"auth_method":"COMMAND","cdr_location":{"address":')
    assert b'"total_energy":41.5,' in canonical  # a number, trailing zeros dropped
    assert b'"start_date_time":"2024-06-03T16:40:00Z"' in canonical
    assert cdr_hash(cdr) == keccak(canonical)
    # key order, whitespace and nulls in the JSON text do not change the hash
    reordered = json.dumps(
        dict(reversed(list(json.loads(cdr.model_dump_json()).items()))), indent=4
    )
    assert cdr_hash(Cdr.model_validate_json(reordered)) == cdr_hash(cdr)
    changed = cdr.model_copy(update={"total_energy": Decimal("41.501")})
    assert cdr_hash(changed) != cdr_hash(cdr)


def test_the_quick_canonical_path_writes_what_the_general_one_does() -> None:
    documents = [
        make_cdr(load_tariff(name), samples_crossing_power_and_clock()).model_dump(mode="python")
        for name in ("tariff_complex.json", "tariff_max_power.json", "tariff_step_size.json")
    ]
    saturday = (FIXTURES / "cdr_complex_saturday.json").read_text()
    documents.append(json.loads(saturday, parse_float=Decimal))
    documents.append({"é": ["\u2028", None, -Decimal("0.00"), Decimal("1E+2"), True, (1, 2)]})
    for document in documents:
        assert _canonical(document) == _encode(document, indent=None, level=0, canonical=True)


def test_credit_cdr_negates_costs_and_points_at_the_original() -> None:
    cdr = make_cdr(load_tariff("tariff_max_power.json"), samples_crossing_power_and_clock())
    credit = credit_cdr(cdr, last_updated=START + timedelta(days=1))
    assert (credit.id, credit.credit, credit.credit_reference_id) == ("cdr-1-CR", True, "cdr-1")
    assert credit.total_cost.excl_vat == -cdr.total_cost.excl_vat
    assert credit.total_energy == cdr.total_energy
    assert cdr_hash(credit) != cdr_hash(cdr)
    with pytest.raises(ValueError, match="cannot itself be credited"):
        credit_cdr(credit, last_updated=START)


def test_tariff_validation_errors_name_the_field() -> None:
    base: dict[str, object] = {"id": "t", "currency": "EUR", "last_updated": "2024-01-01T00:00:00Z"}
    energy = {"type": "ENERGY", "price": 0.25, "step_size": 1}
    cases: list[tuple[dict[str, object], str]] = [
        ({"elements": [{"price_components": [energy], "tariff_restrictions": {}}]}, "Extra inputs"),
        ({"elements": []}, "at least 1 item"),
        (
            {"elements": [{"price_components": [energy], "restrictions": {"start_time": "24:00"}}]},
            "pattern",
        ),
        (
            {
                "elements": [
                    {"price_components": [energy], "restrictions": {"min_kwh": 5, "max_kwh": 2}}
                ]
            },
            "min_kwh (5) must be below max_kwh (2)",
        ),
        (
            {
                "elements": [
                    {"price_components": [energy], "restrictions": {"start_date": "2024-02-30"}}
                ]
            },
            "not a calendar date",
        ),
        (
            {
                "elements": [
                    {"price_components": [energy], "restrictions": {"reservation": "RESERVATION"}}
                ]
            },
            "only have FLAT and TIME",
        ),
        (
            {"elements": [{"price_components": [{**energy, "step_size": 0}]}]},
            "step_size must be at least 1",
        ),
        (
            {"elements": [{"price_components": [{**energy, "price": -1}]}]},
            "greater than or equal to 0",
        ),
        ({"elements": [{"price_components": [energy]}], "currency": "eur"}, "pattern"),
        (
            {
                "elements": [{"price_components": [energy]}],
                "min_price": {"excl_vat": 5},
                "max_price": {"excl_vat": 4},
            },
            "min_price.excl_vat must not exceed",
        ),
        (
            {"elements": [{"price_components": [energy]}], "preauthorize_amount": -5},
            "greater than or equal to 0",
        ),
    ]
    for extra, message in cases:
        with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
            Tariff.model_validate(base | extra)


def test_tariff_prices_beyond_the_escrow_and_lists_beyond_a_sane_size_are_refused() -> None:
    """A price of 1e30 per kWh, or a tariff of 20,000 elements, was accepted: no session at it
    could be locked (the escrow's maximum is a uint96 of token base units), and every meter
    value priced through all of it."""
    base: dict[str, Any] = {"id": "t", "currency": "EUR", "last_updated": "2024-01-01T00:00:00Z"}
    energy = {"type": "ENERGY", "price": "0.25", "vat": "19", "step_size": 1}
    huge = "1e30"
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"elements": [{"price_components": [{**energy, "price": huge}]}]},
            "elements.0.price_components.0.price",
        ),
        (
            {"elements": [{"price_components": [energy]}], "max_price": {"excl_vat": huge}},
            "max_price.excl_vat",
        ),
        (
            {
                "elements": [{"price_components": [energy]}],
                "min_price": {"excl_vat": 1, "incl_vat": huge},
            },
            "min_price.incl_vat",
        ),
        (
            {"elements": [{"price_components": [energy]}], "preauthorize_amount": huge},
            "preauthorize_amount",
        ),
        ({"elements": [{"price_components": [energy]}] * 20_000}, "elements"),
        ({"elements": [{"price_components": [energy] * 20_000}]}, "elements.0.price_components"),
        (
            {
                "elements": [{"price_components": [energy]}],
                "tariff_alt_text": [{"language": "en", "text": "x"}] * 20_000,
            },
            "tariff_alt_text",
        ),
    ]
    for extra, field in cases:
        with pytest.raises(ValidationError) as refused:
            Tariff.model_validate(base | extra)
        [error] = refused.value.errors()
        assert ".".join(str(p) for p in error["loc"]) == field, error
        assert "at most" in error["msg"], error
    # The largest price per unit still locks, VAT of 100 % included, within the uint96.
    from chargenet.core.pricing.tariff import MAX_PRICE

    top = {**energy, "price": str(MAX_PRICE), "vat": "100"}
    tariff = Tariff.model_validate(base | {"elements": [{"price_components": [top]}]})
    assert tariff.elements[0].price_components[0].price * 2 * TOKEN_SCALE <= 2**96 - 1


def test_tariff_restrictions_beyond_what_a_session_can_reach_are_refused() -> None:
    """Restriction values were bounded by their digits only: 1e90 kWh, a minimum duration of
    thirty thousand years or a day listed 20,000 times were taken (the engine cuts every
    session at each bound), and a day listed twice was refused naming no field."""
    base: dict[str, Any] = {"id": "t", "currency": "EUR", "last_updated": "2024-01-01T00:00:00Z"}
    energy = {"type": "ENERGY", "price": "0.25", "step_size": 1}

    def restricted(**restrictions: Any) -> dict[str, Any]:
        return base | {"elements": [{"price_components": [energy], "restrictions": restrictions}]}

    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"max_kwh": "1e90"}, "max_kwh", "less than or equal to 10000"),
        ({"min_kwh": 10_001}, "min_kwh", "less than or equal to 10000"),
        ({"max_power": "1e6"}, "max_power", "less than or equal to 10000"),
        ({"min_power": -1}, "min_power", "greater than or equal to 0"),
        ({"max_current": 20_000}, "max_current", "less than or equal to 10000"),
        ({"min_duration": 10**12}, "min_duration", "less than or equal to 2592000"),
        ({"max_duration": 2_592_001}, "max_duration", "less than or equal to 2592000"),
        ({"start_time": "9:00"}, "start_time", "pattern"),
        ({"end_time": "23:60"}, "end_time", "pattern"),
        ({"day_of_week": ["MONDAY", "MONDAY"]}, "day_of_week", "lists MONDAY twice"),
        ({"day_of_week": ["MONDAY"] * 20_000}, "day_of_week", "at most 7"),
    ]
    for restrictions, field, message in cases:
        with pytest.raises(ValidationError) as refused:
            Tariff.model_validate(restricted(**restrictions))
        [error] = refused.value.errors()
        where = ".".join(str(p) for p in error["loc"])
        assert where == f"elements.0.restrictions.{field}", error
        assert message in error["msg"], error
    # The largest values pass: 30 days of charging, 10 MWh, 10 MW, 10 kA, every day once.
    largest = restricted(
        min_kwh=0,
        max_kwh=10_000,
        min_power=0,
        max_power=10_000,
        min_current=0,
        max_current=10_000,
        min_duration=0,
        max_duration=2_592_000,
        start_time="00:00",
        end_time="23:59",
        day_of_week=[day.value for day in DayOfWeek],
    )
    assert Tariff.model_validate(largest).elements[0].restrictions is not None


def test_preauthorize_amount_from_ocpi_2_3() -> None:
    tariff = Tariff.model_validate(
        {
            "id": "t",
            "currency": "EUR",
            "last_updated": "2024-01-01T00:00:00Z",
            "elements": [{"price_components": [{"type": "ENERGY", "price": 0.25, "step_size": 1}]}],
            "preauthorize_amount": "30.00",
            "tax_included": "NO",
        }
    )
    assert tariff.preauthorize_amount == Decimal("30.00")


def test_cli_prices_a_cdr(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(
        [
            "tariff",
            "price",
            "--tariff",
            str(FIXTURES / "tariff_time_2eur.json"),
            "--cdr",
            str(FIXTURES / "cdr_time_2eur.json"),
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out, parse_float=Decimal)
    assert printed["currency_decimals"] == 2
    assert printed["total_cost"]["excl_vat"] == Decimal(4)
    assert printed["total_cost"]["incl_vat"] == Decimal("4.4")
    assert printed["total_cost_units"] == {
        "excl_vat": 4_000_000,
        "vat": 400_000,
        "incl_vat": 4_400_000,
    }
    assert printed["total_time_cost"]["excl_vat"] == Decimal(4)
    assert printed["cost_parts"][0]["volume_billed"] == Decimal(2)  # 7103 s -> 24 steps of 300 s


def test_cli_prices_our_own_cdr_like_the_escrow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tariff = load_tariff("tariff_step_size.json")
    end = START + timedelta(minutes=90)
    cdr = make_cdr(tariff, samples_crossing_power_and_clock(), end)
    (tmp_path / "cdr.json").write_text(cdr.model_dump_json())
    code = cli(
        [
            "tariff",
            "price",
            "--tariff",
            str(FIXTURES / "tariff_step_size.json"),
            "--cdr",
            str(tmp_path / "cdr.json"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    printed = json.loads(out, parse_float=Decimal)
    settled = price_samples(tariff, samples_crossing_power_and_clock(), end=end)
    assert printed["total_cost_units"]["incl_vat"] == settled.total_incl_vat_units
    assert printed["total_cost"]["incl_vat"] == settled.total_incl_vat_decimal
    assert '"incl_vat": 3.10,' in out  # currency amounts print with their cents


def test_cli_prints_rounded_and_exact_amounts_for_a_sub_cent_price(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the OCPI "Complex Tariff" Saturday example: exactly 14.125 EUR incl. VAT, settled 14.13.
    # The fixture is the CDR build_cdr wrote for it (tariff_complex.json, 114 min at 43 A, 40 kWh,
    # 71 min parked), without the embedded tariff.
    fixture = FIXTURES / "cdr_complex_saturday.json"
    cdr = Cdr.model_validate_json(fixture.read_bytes())
    assert cdr.total_cost == Price(excl_vat=Decimal("12.50"), incl_vat=Decimal("14.13"))
    parts = [cdr.total_fixed_cost, cdr.total_time_cost, cdr.total_parking_cost]
    assert sum(p.incl_vat or 0 for p in parts if p is not None) == Decimal("14.13")
    args = ["--tariff", str(FIXTURES / "tariff_complex.json"), "--cdr", str(fixture)]
    assert cli(["tariff", "price", *args]) == 0
    out = capsys.readouterr().out
    printed = json.loads(out, parse_float=Decimal)
    total = printed["total_cost"]
    assert (total["excl_vat"], total["incl_vat"]) == (Decimal("12.50"), Decimal("14.13"))
    assert (total["exact_excl_vat"], total["exact_incl_vat"]) == (
        Decimal("12.5"),
        Decimal("14.125"),
    )
    assert printed["total_cost_units"] == {
        "excl_vat": 12_500_000,
        "vat": 1_630_000,
        "incl_vat": 14_130_000,
    }
    breakdown = printed["vat_breakdown"]
    assert sum(r["vat_amount"] for r in breakdown) == Decimal("1.63")
    assert '"incl_vat": 14.13,' in out
    print(out)


def test_cli_refuses_bad_input_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"id": "x", "currency": "EUR", "elements": [], "last_updated": "2024-01-01T00:00:00Z"}'
    )
    assert (
        cli(
            ["tariff", "price", "--tariff", str(bad), "--cdr", str(FIXTURES / "cdr_time_2eur.json")]
        )
        == 2
    )
    assert (
        "is not a valid OCPI tariff: elements: List should have at least 1 item"
        in capsys.readouterr().err
    )
    # a currency without a known minor unit cannot be rounded: refused with its code
    for name, source in (
        ("t.json", FIXTURES / "tariff_time_2eur.json"),
        ("c.json", FIXTURES / "cdr_time_2eur.json"),
    ):
        (tmp_path / name).write_text(source.read_text().replace('"EUR"', '"XYZ"'))
    args = ["--tariff", str(tmp_path / "t.json"), "--cdr", str(tmp_path / "c.json")]
    assert cli(["tariff", "price", *args]) == 2
    assert "tariff price: unknown currency 'XYZ'" in capsys.readouterr().err
    missing = tmp_path / "missing.json"
    assert cli(["tariff", "price", "--tariff", str(missing), "--cdr", str(missing)]) == 2
    assert "cannot read the tariff file" in capsys.readouterr().err
