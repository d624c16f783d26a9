"""Off-chain documents: the OCPI location and tariff a station's chain record stands for.

The tariff is pinned on chain by ``tariffHash``: keccak-256 of the document's canonical JSON, the
same canonical form (``chargenet.core.pricing.canonical_hash``) as the CDR hash at settlement. It
is hashed as submitted (numbers parsed as exact decimals), so anyone holding the JSON can
recompute it. The chain pins no location hash; a location is accepted when it states what the
chain states: the station's id, its coordinates to the micro-degree, its connector count and no
connector above the station's maximum power.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from functools import cache
from itertools import accumulate
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from chargenet.core.errors import Unprocessable, reasons
from chargenet.core.pricing import Tariff, canonical_hash, canonical_json


class ConnectorType(StrEnum):
    """OCPI 2.2.1 ConnectorType."""

    CHADEMO = "CHADEMO"
    CHAOJI = "CHAOJI"
    DOMESTIC_A = "DOMESTIC_A"
    DOMESTIC_B = "DOMESTIC_B"
    DOMESTIC_C = "DOMESTIC_C"
    DOMESTIC_D = "DOMESTIC_D"
    DOMESTIC_E = "DOMESTIC_E"
    DOMESTIC_F = "DOMESTIC_F"
    DOMESTIC_G = "DOMESTIC_G"
    DOMESTIC_H = "DOMESTIC_H"
    DOMESTIC_I = "DOMESTIC_I"
    DOMESTIC_J = "DOMESTIC_J"
    DOMESTIC_K = "DOMESTIC_K"
    DOMESTIC_L = "DOMESTIC_L"
    DOMESTIC_M = "DOMESTIC_M"
    DOMESTIC_N = "DOMESTIC_N"
    DOMESTIC_O = "DOMESTIC_O"
    GBT_AC = "GBT_AC"
    GBT_DC = "GBT_DC"
    IEC_60309_2_SINGLE_16 = "IEC_60309_2_single_16"
    IEC_60309_2_THREE_16 = "IEC_60309_2_three_16"
    IEC_60309_2_THREE_32 = "IEC_60309_2_three_32"
    IEC_60309_2_THREE_64 = "IEC_60309_2_three_64"
    IEC_62196_T1 = "IEC_62196_T1"
    IEC_62196_T1_COMBO = "IEC_62196_T1_COMBO"
    IEC_62196_T2 = "IEC_62196_T2"
    IEC_62196_T2_COMBO = "IEC_62196_T2_COMBO"
    IEC_62196_T3A = "IEC_62196_T3A"
    IEC_62196_T3C = "IEC_62196_T3C"
    NEMA_5_20 = "NEMA_5_20"
    NEMA_6_30 = "NEMA_6_30"
    NEMA_6_50 = "NEMA_6_50"
    NEMA_10_30 = "NEMA_10_30"
    NEMA_10_50 = "NEMA_10_50"
    NEMA_14_30 = "NEMA_14_30"
    NEMA_14_50 = "NEMA_14_50"
    PANTOGRAPH_BOTTOM_UP = "PANTOGRAPH_BOTTOM_UP"
    PANTOGRAPH_TOP_DOWN = "PANTOGRAPH_TOP_DOWN"
    TESLA_R = "TESLA_R"
    TESLA_S = "TESLA_S"


class ConnectorFormat(StrEnum):
    SOCKET = "SOCKET"
    CABLE = "CABLE"


class PowerType(StrEnum):
    AC_1_PHASE = "AC_1_PHASE"
    AC_2_PHASE = "AC_2_PHASE"
    AC_2_PHASE_SPLIT = "AC_2_PHASE_SPLIT"
    AC_3_PHASE = "AC_3_PHASE"
    DC = "DC"


_PHASES = {
    PowerType.AC_1_PHASE: 1,
    PowerType.AC_2_PHASE: 2,
    PowerType.AC_2_PHASE_SPLIT: 2,
    PowerType.AC_3_PHASE: 3,
    PowerType.DC: 1,
}


@cache
def _time_zones() -> frozenset[str]:
    # "localtime" is whatever the reading machine's clock is set to: each service would price
    # the same station in another zone.
    return frozenset(available_timezones() - {"localtime"})


def _time_zone(name: str) -> str:
    # The wallet, the escrow and invoicing load it with ZoneInfo to price and print sessions;
    # one they cannot load fails every session at the station, long after the registration.
    if name not in _time_zones():
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Berlin)")
    return name


#: The index's Integer columns (PostgreSQL's int4) hold the OCPP numbering.
INT32_MAX = 2**31 - 1
#: StationRegistry.StationInfo.maxPowerW is a uint32.
UINT32_MAX = 2**32 - 1
#: Connectors of a station: StationRegistry.StationInfo.connectorCount is a uint8.
MAX_CONNECTORS = 255
#: EVSEs of a location: each has a connector at least, so more could never register. Bounded
#: in the model, before each is validated (the body's 1 MiB held tens of thousands).
MAX_EVSES = MAX_CONNECTORS
#: Connectors of an EVSE: an OCPI EVSE charges one vehicle at a time, its connectors are the
#: plugs and cables to choose from (e.g. CCS, CHAdeMO and Type 2); real ones have a few.
MAX_EVSE_CONNECTORS = 16
Id36 = Annotated[str, StringConstraints(min_length=1, max_length=36)]
TimeZone = Annotated[str, AfterValidator(_time_zone)]
Latitude = Annotated[str, StringConstraints(pattern=r"^-?[0-9]{1,2}\.[0-9]{5,7}$")]
Longitude = Annotated[str, StringConstraints(pattern=r"^-?[0-9]{1,3}\.[0-9]{5,7}$")]


class _Ocpi(BaseModel):
    # Other OCPI fields (opening times, facilities, ...) are kept in the document, not read.
    model_config = ConfigDict(extra="allow", frozen=True)


class GeoLocation(_Ocpi):
    latitude: Latitude
    longitude: Longitude


class ConnectorDoc(_Ocpi):
    id: Id36
    standard: ConnectorType
    format: ConnectorFormat
    power_type: PowerType
    max_voltage: int = Field(gt=0)
    max_amperage: int = Field(gt=0)
    # Bounded here, before anything is sent: beyond the columns or the chain's uint32 the
    # transaction went out and storing its documents failed (500), or the signer could not
    # encode it (502), and every retry failed the same way.
    max_electric_power: int | None = Field(default=None, gt=0, le=UINT32_MAX)
    #: chargenet: the OCPP connector id (1.6: per charge point; 2.0.1: within the EVSE). Taken
    #: from ``id`` when that is a number.
    ocpp_connector_id: int | None = Field(default=None, ge=1, le=INT32_MAX)

    @property
    def power_w(self) -> int:
        if self.max_electric_power is not None:
            return self.max_electric_power
        return self.max_voltage * self.max_amperage * _PHASES[self.power_type]


class EvseDoc(_Ocpi):
    uid: Id36
    evse_id: Annotated[str, StringConstraints(max_length=48)] | None = None
    connectors: list[ConnectorDoc] = Field(min_length=1, max_length=MAX_EVSE_CONNECTORS)
    #: chargenet: the OCPP identity of the charge point this EVSE belongs to.
    charge_point_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    #: chargenet: the OCPP 2.0.1 EVSE id; absent for OCPP 1.6 charge points.
    ocpp_evse_id: int | None = Field(default=None, ge=1, le=INT32_MAX)


class LocationDoc(_Ocpi):
    id: Id36
    name: Annotated[str, StringConstraints(max_length=255)] | None = None
    coordinates: GeoLocation
    time_zone: TimeZone | None = None
    #: chargenet: the charge point of every EVSE that does not name its own.
    charge_point_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    evses: list[EvseDoc] = Field(min_length=1, max_length=MAX_EVSES)


@dataclass(frozen=True)
class ConnectorRow:
    evse_uid: str
    connector_id: str
    evse_id: str | None
    standard: str
    power_type: str
    max_electric_power_w: int
    charge_point_id: str
    ocpp_evse_id: int
    ocpp_connector_id: int


@dataclass(frozen=True)
class CheckedLocation:
    document: dict[str, Any]
    hash: str
    model: LocationDoc
    latitude_e6: int
    longitude_e6: int
    connectors: tuple[ConnectorRow, ...]

    @property
    def max_power_w(self) -> int:
        return max(c.max_electric_power_w for c in self.connectors)


@dataclass(frozen=True)
class CheckedTariff:
    document: dict[str, Any]
    hash: str
    tariff_id: str


#: How deep a request's JSON may nest (a location nests 5 levels). json.loads recurses once per
#: level, and py_ecc (imported with web3) raises the recursion limit to 100,000: past the
#: thread's stack, a deeper body crashed the process.
MAX_JSON_DEPTH = 32
#: The longest number, in the plain notation the canonical hash writes it in (1e999999 would be
#: a million digits; beyond the decimal context's exponents hashing failed).
MAX_NUMBER_CHARS = 100
# A string, to its closing quote or the end of the text: always matches, so one pass.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*"?')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _depth(text: str) -> int:
    brackets = _JSON_BRACKET.findall(_JSON_STRING.sub("", text))
    return max(accumulate((1 if b in "[{" else -1 for b in brackets), initial=0))


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} characters is too long")
    return int(text)


def _decimal(text: str) -> Decimal:
    value = Decimal(text)
    _sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # Decimal takes "NaN"; JSON's grammar does not
        raise ValueError(f"{text} is not a number")
    plain = len(digits) + exponent if exponent >= 0 else max(len(digits), -exponent) + 1
    if plain > MAX_NUMBER_CHARS:
        raise ValueError(f"{text[:20]}: a number of {plain} digits written plainly is too long")
    return value


def _constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON has")


def _check_text(value: Any) -> None:
    """No NUL in a string: PostgreSQL's text columns take none (as a ValueError)."""
    if isinstance(value, str):
        if "\0" in value:
            raise ValueError(f"{value[:40]!r} holds a NUL character")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    elif isinstance(value, list):
        for item in value:
            _check_text(item)


def parse_json(raw: bytes | str, what: str) -> dict[str, Any]:
    """JSON with numbers as exact decimals (a float would change the canonical hash)."""
    try:
        text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw))
        depth = _depth(text)
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels ({depth})")
        value = json.loads(text, parse_float=_decimal, parse_int=_integer, parse_constant=_constant)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError included
        raise Unprocessable(f"{what}: not JSON ({error})") from None
    try:
        _check_text(value)
    except ValueError as error:
        raise Unprocessable(f"{what}: {error}") from None
    if not isinstance(value, dict):
        raise Unprocessable(f"{what}: expected a JSON object")
    return value


def document_hash(document: Mapping[str, Any]) -> str:
    return "0x" + canonical_hash(document).hex()


def canonical_text(document: Mapping[str, Any]) -> str:
    return canonical_json(document).decode()


def _reasons(error: ValidationError, what: str) -> str:
    return f"{what}: {reasons(error.errors(), most=5)}"


def micro_degrees(text: str, limit: int, what: str) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise Unprocessable(f"{what} {text!r} is not a number") from None
    micro = int((value * 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    if not -limit * 1_000_000 <= micro <= limit * 1_000_000:
        raise Unprocessable(f"{what} {text} is out of range [-{limit}, {limit}]")
    return micro


def check_location(document: dict[str, Any]) -> CheckedLocation:
    """Validate an OCPI location (422 with the reasons); nothing about the chain yet."""
    try:
        model = LocationDoc.model_validate(document)
    except ValidationError as error:
        raise Unprocessable(_reasons(error, "location")) from None
    latitude = micro_degrees(model.coordinates.latitude, 90, "location latitude")
    longitude = micro_degrees(model.coordinates.longitude, 180, "location longitude")
    rows: list[ConnectorRow] = []
    seen: set[tuple[str, str]] = set()
    for evse in model.evses:
        charge_point = evse.charge_point_id or model.charge_point_id
        if charge_point is None:
            raise Unprocessable(
                f"location: EVSE {evse.uid} names no charge_point_id (nor does the location)"
            )
        for connector in evse.connectors:
            if (evse.uid, connector.id) in seen:
                raise Unprocessable(f"location: connector {evse.uid}/{connector.id} is repeated")
            seen.add((evse.uid, connector.id))
            ocpp_id = connector.ocpp_connector_id
            if ocpp_id is None:
                digits = connector.id.isascii() and connector.id.isdigit()
                if not digits or not 1 <= int(connector.id) <= INT32_MAX:
                    raise Unprocessable(
                        f"location: connector {evse.uid}/{connector.id}: give ocpp_connector_id"
                        f" (the id is not an OCPP connector number, 1 to {INT32_MAX})"
                    )
                ocpp_id = int(connector.id)
            if connector.power_w > UINT32_MAX:
                raise Unprocessable(
                    f"location: connector {evse.uid}/{connector.id}: {connector.power_w} W"
                    f" (voltage x amperage x phases) is above the chain's {UINT32_MAX} W;"
                    " give max_electric_power"
                )
            rows.append(
                ConnectorRow(
                    evse_uid=evse.uid,
                    connector_id=connector.id,
                    evse_id=evse.evse_id,
                    standard=connector.standard.value,
                    power_type=connector.power_type.value,
                    max_electric_power_w=connector.power_w,
                    charge_point_id=charge_point,
                    ocpp_evse_id=evse.ocpp_evse_id or 0,
                    ocpp_connector_id=ocpp_id,
                )
            )
    if len(rows) > MAX_CONNECTORS:
        raise Unprocessable(
            f"location: at most {MAX_CONNECTORS} connectors per station (the chain's uint8)"
        )
    return CheckedLocation(
        document=document,
        hash=document_hash(document),
        model=model,
        latitude_e6=latitude,
        longitude_e6=longitude,
        connectors=tuple(rows),
    )


def check_tariff(document: dict[str, Any]) -> CheckedTariff:
    """Validate an OCPI tariff (it must be priceable) and hash it."""
    try:
        tariff = Tariff.model_validate(document)
    except ValidationError as error:
        raise Unprocessable(_reasons(error, "tariff")) from None
    if len(tariff.id.encode()) > 32:
        raise Unprocessable("tariff: the id must fit the chain's 32 bytes")
    return CheckedTariff(document=document, hash=document_hash(document), tariff_id=tariff.id)


@dataclass(frozen=True)
class ChainRecord:
    """What the chain says about a station (from the index or about to be sent)."""

    station_id: str
    latitude_e6: int
    longitude_e6: int
    connector_count: int
    max_power_w: int
    tariff_id: str
    tariff_hash: str


def location_mismatches(location: CheckedLocation, chain: ChainRecord) -> list[str]:
    """Why a location does not describe the station on chain (empty when it does)."""
    mismatches = []
    if location.model.id != chain.station_id:
        mismatches.append(f"id {location.model.id!r} is not the station id {chain.station_id!r}")
    if (location.latitude_e6, location.longitude_e6) != (chain.latitude_e6, chain.longitude_e6):
        mismatches.append(
            f"coordinates ({location.latitude_e6}, {location.longitude_e6}) micro-degrees are"
            f" not the chain's ({chain.latitude_e6}, {chain.longitude_e6})"
        )
    if len(location.connectors) != chain.connector_count:
        mismatches.append(
            f"{len(location.connectors)} connectors, the chain has {chain.connector_count}"
        )
    if location.max_power_w > chain.max_power_w:
        mismatches.append(
            f"a connector of {location.max_power_w} W exceeds the chain's {chain.max_power_w} W"
        )
    return mismatches


def tariff_mismatches(tariff: CheckedTariff, chain: ChainRecord) -> list[str]:
    mismatches = []
    if tariff.hash != chain.tariff_hash:
        mismatches.append(f"keccak hash {tariff.hash} is not the chain's {chain.tariff_hash}")
    if tariff.tariff_id != chain.tariff_id:
        mismatches.append(f"id {tariff.tariff_id!r} is not the chain's {chain.tariff_id!r}")
    return mismatches
