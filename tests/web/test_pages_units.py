"""The pure pieces behind the pages, without a browser: money as typed and shown, the AFIR
tariff headline, the offline map projection, the revenue chart and the console's station form."""

from __future__ import annotations

from datetime import date

import pytest

from chargenet.registry.console.chart import per_day, revenue_chart
from chargenet.registry.console.forms import FormError, StationForm, documents, prefill
from chargenet.registry.documents import check_location, check_tariff
from chargenet.wallet.web import money
from chargenet.wallet.web.mapview import Point, map_view, project
from chargenet.wallet.web.tariff import tariff_view


def test_amounts_typed_are_exact_whole_cents() -> None:
    assert money.parse("20", "EUR", field="Amount") == 20_000_000
    assert money.parse(" 20,5 ", "EUR", field="Amount") == 20_500_000
    assert money.parse("0.01", "EUR", field="Amount") == 10_000
    for bad, why in (
        ("", "enter an amount"),
        ("abc", "not a number"),
        ("-1", "more than zero"),
        ("0", "more than zero"),
        ("1.001", "2 decimals at most"),
        ("NaN", "not a number"),
        ("1e9", "at most"),
        ("\uff12\uff10", "not a number"),  # full-width digits: Decimal() read them as 20
        ("1_000", "not a number"),
    ):
        with pytest.raises(money.AmountError, match=why):
            money.parse(bad, "EUR", field="Amount")


def test_amounts_shown_round_half_up_to_the_minor_unit() -> None:
    assert money.show(14_125_000, "EUR") == "14.13 EUR"
    assert money.show(1_234_567_890_000, "EUR") == "1,234,567.89 EUR"
    assert money.show(0, "JPY") == "0 JPY"
    assert money.show(None, "EUR") == "\u2013"


def test_tariff_headline_is_kwh_then_minute_then_session_incl_vat() -> None:
    view = tariff_view(
        {
            "id": "T",
            "currency": "EUR",
            "elements": [
                {
                    "price_components": [
                        {"type": "FLAT", "price": "0.50", "vat": "19", "step_size": 1},
                        {"type": "TIME", "price": "1.20", "vat": "19", "step_size": 60},
                        {"type": "ENERGY", "price": "0.40", "vat": "19", "step_size": 1},
                    ],
                    "restrictions": {"start_time": "08:00", "end_time": "20:00"},
                },
                {"price_components": [{"type": "ENERGY", "price": "0.30", "step_size": 1}]},
            ],
            "last_updated": "2026-01-01T00:00:00Z",
        }
    )
    assert view is not None and view.conditional
    assert [(line.label, line.price, line.unit, line.vat) for line in view.lines] == [
        ("Energy", "0.476", "per kWh", "19"),  # the first element's price, 0.40 x 1.19
        ("Charging time", "0.0238", "per minute", "19"),  # 1.20 per hour x 1.19 / 60
        ("Session fee", "0.595", "per session", "19"),
    ]
    assert tariff_view(None) is None
    assert tariff_view({"id": "broken"}) is None


def test_offline_map_keeps_geography_and_fits_the_view() -> None:
    west = Point("W", 52.52, 13.30, "west", True)
    east = Point("E", 52.52, 13.50, "east", False)
    north = Point("N", 52.60, 13.40, "north", True)
    view = map_view([west, east, north])
    marks = {m.point.station_id: m for m in view.markers}
    assert marks["W"].x < marks["N"].x < marks["E"].x
    assert marks["N"].y < marks["W"].y == marks["E"].y  # north is up
    for mark in view.markers:
        assert 0 < mark.x < view.width and 0 < mark.y < view.height
    assert view.grid and all(line.label.endswith(("N", "E")) for line in view.grid)
    single = map_view([west], centre=(52.50, 13.30))
    assert single.centre is not None and single.markers[0].y < single.centre.y
    assert map_view([]).markers == ()
    assert project(0, 0) == (0.5, 0.5)


def test_revenue_per_day_sums_invoices_and_keeps_empty_days() -> None:
    totals = per_day([(date(2026, 11, 29), 950_000), (date(2026, 11, 29), 50_000)])
    assert totals == {date(2026, 11, 29): 1_000_000}
    chart = revenue_chart({**totals, date(2026, 11, 20): 2_500_000}, date(2026, 11, 29), days=14)
    assert len(chart.bars) == 14 and chart.total == 3_500_000
    assert chart.bars[-1].units == 1_000_000 and chart.bars[0].units == 0
    tallest = max(chart.bars, key=lambda b: b.height)
    assert tallest.day == date(2026, 11, 20)
    assert chart.ticks[-1][1] == 5_000_000  # the axis tops out at a round 5.00
    assert revenue_chart({}, date(2026, 11, 29)).total == 0


def test_station_form_makes_documents_the_registry_accepts_and_reads_them_back() -> None:
    form = StationForm(
        station_id="DE*ABC*S0007",
        name="Depot",
        latitude="52.5",
        longitude="13.4",
        charge_point_id="CP-7",
        connectors="2",
        standard="IEC_62196_T2_COMBO",
        power_kw="150",
        energy_price="0.49",
        minute_price="0.05",
        session_fee="0",
        meter_key_hash="0x" + "ab" * 32,
    )
    body = documents(form)
    location = check_location(body["location"])
    tariff = check_tariff(body["tariff"])
    assert location is not None and tariff is not None
    components = body["tariff"]["elements"][0]["price_components"]
    assert [(c["type"], c["price"]) for c in components] == [("ENERGY", "0.49"), ("TIME", "3.00")]
    assert body["tariff"]["party_id"] == "ABC"
    detail = {
        "station_id": "DE*ABC*S0007",
        "meter_key_hash": form.meter_key_hash,
        "tariff": body["tariff"],
        "location": {"document": body["location"]},
    }
    again = prefill(detail)
    assert (again.connectors, again.power_kw, again.minute_price, again.session_fee) == (
        "2",
        "150",
        "0.05",
        "0",
    )
    with pytest.raises(FormError, match="at least one"):
        documents(StationForm(**{**form.__dict__, "energy_price": "0", "minute_price": "0"}))
    with pytest.raises(FormError, match="Connectors"):
        documents(StationForm(**{**form.__dict__, "connectors": "9"}))
    with pytest.raises(FormError, match="not a number"):
        documents(StationForm(**{**form.__dict__, "vat": "x"}))
