"""The station form: what a CPO types, turned into the OCPI location and tariff documents the
registry's CPO API takes, and back (to prefill the form for an update).

Prices are typed excl. VAT in the currency: per kWh, per minute (OCPI prices time per hour) and
per session. The registry validates the documents again; this only shapes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from chargenet.core.web.numbers import NotANumber, typed_decimal, typed_int

STANDARDS: tuple[tuple[str, str], ...] = (
    ("IEC_62196_T2", "Type 2 (AC)"),
    ("IEC_62196_T2_COMBO", "CCS Combo 2 (DC)"),
    ("CHADEMO", "CHAdeMO (DC)"),
    ("DOMESTIC_F", "Schuko"),
)
_DC = {"IEC_62196_T2_COMBO", "CHADEMO"}


class FormError(ValueError):
    """What was typed cannot make a station; the message names the field."""


@dataclass
class StationForm:
    station_id: str = ""
    name: str = ""
    address: str = ""
    city: str = ""
    latitude: str = ""
    longitude: str = ""
    charge_point_id: str = ""
    connectors: str = "1"
    standard: str = "IEC_62196_T2"
    power_kw: str = "22"
    currency: str = "EUR"
    energy_price: str = "0.39"
    minute_price: str = "0"
    session_fee: str = "0.50"
    vat: str = "19"
    time_zone: str = "Europe/Berlin"
    meter_key_hash: str = ""
    tariff_id: str = ""
    errors: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, values: dict[str, str]) -> StationForm:
        form = cls()
        for name, value in values.items():
            if name in cls.__dataclass_fields__ and name != "errors":
                setattr(form, name, value.strip())
        return form


#: The largest number a field takes (a power in kW, a price): scaled (kW to W, per minute to
#: per hour), a much larger one overflowed the decimal context or Python's int digits (a 500).
MAXIMUM = Decimal(1_000_000)


def _decimal(text: str, name: str, *, minimum: Decimal = Decimal(0)) -> Decimal:
    try:
        value = typed_decimal(text)
    except NotANumber:
        raise FormError(f"{name}: {text!r} is not a number") from None
    if not value.is_finite() or value < minimum:
        raise FormError(f"{name}: must be {minimum} or more")
    if value > MAXIMUM:
        raise FormError(f"{name}: at most {MAXIMUM}")
    return value


def _coordinate(text: str, name: str, limit: int) -> str:
    """Degrees as OCPI writes them (6 decimals), whatever precision was typed."""
    value = _decimal(text, name, minimum=Decimal(-limit))
    if value > limit:
        raise FormError(f"{name}: between -{limit} and {limit}")
    return f"{value:.6f}"


def documents(form: StationForm, now: datetime | None = None) -> dict[str, Any]:
    """The body of ``POST /v1/cpo/stations`` (``station_id`` is left out for an update)."""
    for name in ("station_id", "name", "charge_point_id", "latitude", "longitude"):
        if not getattr(form, name):
            raise FormError(f"{name.replace('_', ' ').capitalize()}: required")
    if form.standard not in dict(STANDARDS):
        raise FormError(f"Connector type: choose one of {', '.join(dict(STANDARDS).values())}")
    try:
        count = typed_int(form.connectors)
    except NotANumber:
        raise FormError("Connectors: a whole number from 1 to 8") from None
    if not 1 <= count <= 8:
        raise FormError("Connectors: a whole number from 1 to 8")
    latitude = _coordinate(form.latitude, "Latitude", 90)
    longitude = _coordinate(form.longitude, "Longitude", 180)
    power_w = int(_decimal(form.power_kw, "Power (kW)", minimum=Decimal("1")) * 1000)
    energy = _decimal(form.energy_price, "Price per kWh")
    minute = _decimal(form.minute_price, "Price per minute")
    fee = _decimal(form.session_fee, "Session fee")
    vat = _decimal(form.vat, "VAT (%)")
    if vat > 100:
        raise FormError("VAT (%): at most 100")
    components = [
        {"type": kind, "price": str(price), "vat": str(vat), "step_size": step}
        for kind, price, step in (
            ("ENERGY", energy, 1),
            ("TIME", minute * 60, 60),  # OCPI: per hour, billed per started minute
            ("FLAT", fee, 1),
        )
        if price > 0
    ]
    if not components:
        raise FormError("Prices: give at least one of per kWh, per minute or per session")
    dc = form.standard in _DC
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    parts = form.station_id.split("*")  # DE*ABC*S0001: country, party, station
    suffix = parts[-1]
    location = {
        "id": form.station_id,
        "name": form.name,
        "address": form.address,
        "city": form.city,
        "coordinates": {"latitude": latitude, "longitude": longitude},
        "time_zone": form.time_zone,
        "charge_point_id": form.charge_point_id,
        "evses": [
            {
                "uid": f"E{n}",
                "evse_id": f"{form.station_id.rsplit('*', 1)[0]}*E{suffix}*{n}",
                "connectors": [
                    {
                        "id": str(n),
                        "standard": form.standard,
                        "format": "CABLE" if dc else "SOCKET",
                        "power_type": "DC" if dc else "AC_3_PHASE",
                        "max_voltage": 920 if dc else 400,
                        "max_amperage": max(1, power_w // (920 if dc else 690)),
                        "max_electric_power": power_w,
                    }
                ],
            }
            for n in range(1, count + 1)
        ],
    }
    tariff = {
        "country_code": form.station_id[:2] if form.station_id[:2].isalpha() else "DE",
        "party_id": parts[1][:3] if len(parts) > 2 else "CPO",
        "id": form.tariff_id or f"T-{suffix}"[:36],
        "currency": form.currency,
        "type": "REGULAR",
        "elements": [{"price_components": components}],
        "last_updated": stamp,
    }
    return {
        "station_id": form.station_id,
        "location": location,
        "tariff": tariff,
        "meter_key_hash": form.meter_key_hash,
    }


def prefill(detail: dict[str, Any]) -> StationForm:
    """The form for updating a station, from the registry's detail of it."""
    location = (detail.get("location") or {}).get("document") or {}
    tariff = detail.get("tariff") or {}
    evses = location.get("evses") or [{}]
    connector = (evses[0].get("connectors") or [{}])[0]
    prices = {"ENERGY": Decimal(0), "TIME": Decimal(0), "FLAT": Decimal(0)}
    vat = "19"
    for element in tariff.get("elements", [])[:1]:
        for component in element.get("price_components", []):
            if component.get("type") in prices:
                prices[component["type"]] = Decimal(str(component["price"]))
                vat = str(component.get("vat", vat))
    coordinates = location.get("coordinates") or {}
    return StationForm(
        station_id=str(detail["station_id"]),
        name=str(location.get("name", "")),
        address=str(location.get("address", "") or ""),
        city=str(location.get("city", "") or ""),
        latitude=str(coordinates.get("latitude", "")),
        longitude=str(coordinates.get("longitude", "")),
        charge_point_id=str(location.get("charge_point_id", "")),
        connectors=str(len(evses)),
        standard=str(connector.get("standard", "IEC_62196_T2")),
        power_kw=str(Decimal(int(connector.get("max_electric_power", 22000))) / 1000),
        currency=str(tariff.get("currency", "EUR")),
        energy_price=str(prices["ENERGY"]),
        minute_price=str((prices["TIME"] / 60).normalize()),
        session_fee=str(prices["FLAT"]),
        vat=vat,
        time_zone=str(location.get("time_zone", "Europe/Berlin")),
        meter_key_hash=str(detail.get("meter_key_hash", "")),
        tariff_id=str(tariff.get("id", "")),
    )
