"""Reading meter values out of OCPP payloads: energy in Wh, power in W, signed data byte-exact."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
_SCALE = {"Wh": Decimal(1), "kWh": Decimal(1000), "W": Decimal(1), "kW": Decimal(1000)}


@dataclass(slots=True)
class Reading:
    energy_wh: Decimal | None = None
    power_w: Decimal | None = None
    #: Signed readings exactly as sent (1.6 SignedData values, 2.0.1 signedMeterData).
    signed: list[str] = field(default_factory=list)
    time: datetime | None = None


def whole(value: Decimal | int | float | str | None) -> int | None:
    """Wh or W as the event catalogue carries them: whole units, rounded half to even."""
    number = value if isinstance(value, Decimal) else _decimal(value)
    if number is None:
        return None
    return int(number.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def parse_time(value: object) -> datetime:
    """A charge point's timestamp, or now if it sent none or garbage (relaxed firmware)."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return datetime.now(UTC)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        # repr keeps a JSON float's shortest decimal form (21.4, not 21.399999...).
        return Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        return None


def read_v16(meter_values: list[dict[str, Any]]) -> Reading:
    reading = Reading()
    for meter_value in meter_values:
        reading.time = parse_time(meter_value.get("timestamp"))
        for sampled in meter_value.get("sampledValue", ()):
            value = sampled.get("value")
            if sampled.get("format") == "SignedData":
                if isinstance(value, str):
                    reading.signed.append(value)
                continue
            if sampled.get("phase"):
                continue  # the totals matter for billing; per-phase values are diagnostics
            measurand = sampled.get("measurand", ENERGY)
            scale = _SCALE.get(sampled.get("unit", "Wh" if measurand == ENERGY else "W"))
            number = _decimal(value)
            if number is None or scale is None:
                continue
            if measurand == ENERGY:
                reading.energy_wh = number * scale
            elif measurand == POWER:
                reading.power_w = number * scale
    return reading


def read_v16_each(meter_values: list[dict[str, Any]]) -> list[Reading]:
    """One reading per moment of a 1.6 ``meterValue`` array. A charger back from offline sends
    its queued readings in one MeterValues; read as one, all but the last were lost, and the
    tariff priced the gap between the two readings it kept as if charged evenly. Entries of one
    timestamp stay one reading: some chargers put the signed value in an entry of its own."""
    moments: dict[object, list[dict[str, Any]]] = {}
    for meter_value in meter_values:
        moments.setdefault(meter_value.get("timestamp"), []).append(meter_value)
    return [read_v16(entries) for entries in moments.values()]


def read_v201(meter_values: list[dict[str, Any]]) -> Reading:
    reading = Reading()
    for meter_value in meter_values:
        reading.time = parse_time(meter_value.get("timestamp"))
        for sampled in meter_value.get("sampledValue", ()):
            signed = sampled.get("signedMeterValue")
            if isinstance(signed, dict) and isinstance(signed.get("signedMeterData"), str):
                reading.signed.append(signed["signedMeterData"])
            if sampled.get("phase"):
                continue
            measurand = sampled.get("measurand", ENERGY)
            unit_spec = sampled.get("unitOfMeasure") or {}
            unit = unit_spec.get("unit", "Wh" if measurand == ENERGY else "W")
            scale = _SCALE.get(unit)
            number = _decimal(sampled.get("value"))
            if number is None or scale is None:
                continue
            value = number * scale * Decimal(10) ** int(unit_spec.get("multiplier", 0))
            if measurand == ENERGY:
                reading.energy_wh = value
            elif measurand == POWER:
                reading.power_w = value
    return reading
