"""Reading meter values out of OCPP payloads: energy in Wh, power in W, signed data byte-exact."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from chargenet.core import ocmf

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
_SCALE = {"Wh": Decimal(1), "kWh": Decimal(1000), "W": Decimal(1), "kW": Decimal(1000)}
#: OBIS 1.8.0, active energy imported, as meters write it: 1-b:1.8.0, 1-0:1.8.0, 01-00:01.08.00.FF.
_IMPORT_REGISTER = re.compile(r"0*1-\w+:0*1\.0*8\.0*0(?:[.*]\w+)?")


@dataclass(slots=True)
class Reading:
    energy_wh: Decimal | None = None
    power_w: Decimal | None = None
    #: Signed readings exactly as sent (1.6 SignedData values, 2.0.1 signedMeterData).
    signed: list[str] = field(default_factory=list)
    time: datetime | None = None
    #: Why a signed value sent without a register reading gave no energy either: the reading is
    #: left out then, and whoever leaves it out says so.
    signed_problem: str | None = None


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
    return [_signed_energy_if_none(read_v16(entries)) for entries in moments.values()]


def _signed_energy_if_none(reading: Reading) -> Reading:
    """Some chargers send a signed value with no plain register reading beside it (an OCMF begin
    record on its own). Without an energy the reading is left out, and with it the signed begin
    the escrow's verification needs first; the record signs the energy itself (the last record,
    as it is the one the reading keeps)."""
    if reading.energy_wh is not None or not reading.signed:
        return reading
    # The record is the charger's text: JSON too deep or a number too long for the parser
    # (ValueError, as OcmfFormatError is) is a record without an energy too, not a failed
    # MeterValues the charger would retry.
    try:
        reading.energy_wh = ocmf_energy_wh(reading.signed[-1])
    except (ValueError, RecursionError) as error:
        reading.signed_problem = str(error)[:200]
    return reading


def ocmf_energy_wh(record: str) -> Decimal:
    """The register an OCMF record signs, in Wh: its import register (1.8.0) reading, else its
    first reading in kWh or Wh. Raises :class:`~chargenet.core.ocmf.OcmfFormatError` if none."""
    readings = [r for r in ocmf.parse(record).readings if r.unit in ("kWh", "Wh")]
    if not readings:
        raise ocmf.OcmfFormatError("no reading in kWh or Wh")
    imported = [
        r for r in readings if isinstance(r.obis, str) and _IMPORT_REGISTER.fullmatch(r.obis)
    ]
    return (imported or readings)[0].wh


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
