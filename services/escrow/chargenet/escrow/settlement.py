"""From a stopped session to what settles it: meter samples -> price -> CDR -> amount and hash.

The CDR is the OCPI 2.2.1 record of the session, priced by the core tariff engine (the same code
invoicing re-prices with); its keccak hash goes on chain with the settlement. When the station's
meter key is known (its keccak matches the on-chain meter key hash), the signed meter values are
verified with the core OCMF verifier and attached; a failure is flagged in the CDR's remark, and
the session still settles (the CPO stays authoritative, the flag makes its claim checkable).

A price above the locked maximum (the budget stop came late, e.g. coarse meter values) settles the
maximum, cut down to whole minor units: nobody can take more than the driver locked. The CDR then
states what was charged: the same charging periods, ``total_cost`` capped (booked like a tariff's
``max_price`` clamp, one adjustment at the highest VAT rate) and the cap named in ``remark``, so
its hash on chain covers the amount settled and anyone can still recompute the uncapped price.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from eth_utils.crypto import keccak
from pydantic import ValidationError

from chargenet.core.ocmf import MeterKeyError, cdr_remark, signed_data, verify_session
from chargenet.core.pricing import (
    AuthMethod,
    Cdr,
    CdrLocation,
    CdrToken,
    MeterSample,
    PricingError,
    RunningPrice,
    Tariff,
    TokenType,
    build_cdr,
    cdr_hash,
    meter_sample,
    price_samples,
    tariff_of,
)
from chargenet.core.pricing.cap import capped, settleable_maximum
from chargenet.core.pricing.money import units_to_amount
from chargenet.escrow.models import SessionRow
from chargenet.escrow.settings import EscrowSettings

#: Request-data keys the escrow adds from the chain at request time (not from the wallet).
STATION_KEY = "_station"


class NothingToSettle(ValueError):
    """The session delivered nothing that can be priced (no energy, no time): cancel instead."""


#: What the CDR's remark says when the price was capped (invoicing recognises the cap by the
#: event's ``price_before_cap``; the remark is for people reading the CDR).
CAP_REMARK = (
    "PRICE CAPPED AT THE LOCKED MAXIMUM: priced {price} {currency} incl. VAT, charged {amount}"
)


class StoredSample(Protocol):
    """A stored register reading as settlement reads it: a ``MeterSampleRow``, or the row of a
    select of its columns (no ORM objects to build for every reading of every stop)."""

    @property
    def id(self) -> int | None: ...
    @property
    def measured_at(self) -> datetime: ...
    @property
    def energy_wh(self) -> int: ...
    @property
    def power_w(self) -> int | None: ...
    @property
    def signed_data(self) -> str | None: ...


@dataclass(frozen=True)
class Settlement:
    price: int  # the tariff's price incl. VAT, before the cap
    amount: int  # what settles: the price, at most the locked maximum
    cdr: Cdr
    cdr_hash: str
    meter_verified: bool
    signed: list[str]


def samples_of(rows: Sequence[StoredSample]) -> list[MeterSample]:
    """The register readings in time order; a reading that goes backwards is dropped (it cannot
    be billed, and one bad frame must not make the whole session unpriceable)."""
    ordered = sorted(rows, key=lambda r: (r.measured_at, r.energy_wh))
    samples: list[MeterSample] = []
    for row in ordered:
        if samples and row.energy_wh < samples[-1].energy_wh:
            continue
        samples.append(meter_sample(row.measured_at, row.energy_wh, row.power_w))
    return samples


def running_price(row: SessionRow, rows: Sequence[StoredSample]) -> RunningPrice:
    """The session's running price over all its stored samples."""
    request = row.request_data()
    tariff = _tariff(request["tariff"])
    running = RunningPrice(tariff, time_zone=request.get("time_zone") or "UTC")
    for sample in samples_of(rows):
        running.add(sample)
    return running


def settle_session(
    row: SessionRow,
    rows: Sequence[StoredSample],
    settings: EscrowSettings,
    *,
    end: datetime | None,
    now: datetime,
) -> Settlement:
    """Price the session and build its CDR; ``end`` adds parking after the last reading."""
    request = row.request_data()
    tariff = _tariff(request["tariff"])
    samples = samples_of(rows)
    if not samples:
        raise NothingToSettle("no meter reading at all")
    if end is not None and end <= samples[-1].timestamp:
        end = None
    if len(samples) < 2 and end is None:
        raise NothingToSettle("a single meter reading and no time after it")
    try:
        result = price_samples(
            tariff, samples, end=end, time_zone=request.get("time_zone") or "UTC"
        )
    except PricingError as error:
        raise NothingToSettle(str(error)) from None
    signed = _signed_records(rows)
    key = meter_key(row, request, settings)
    verified, remark, attached = False, None, None
    if key is not None and signed:
        try:
            verification = verify_session(signed, key)
            verified, remark = verification.ok, cdr_remark(verification)
            attached = signed_data(signed, key)
        except (MeterKeyError, ValidationError) as error:
            remark = f"SIGNED METER VALUES FAILED VERIFICATION: {error}"[:255]
    elif key is not None:
        remark = "SIGNED METER VALUES FAILED VERIFICATION: no signed meter values"
    if tariff.country_code is None or tariff.party_id is None:
        raise NothingToSettle("the tariff names no CPO (country_code, party_id)")
    price = result.total_incl_vat_units
    cap = settleable_maximum(row.max_amount, tariff.currency)
    if price > cap:
        result = capped(result, cap, limit="max_price")
        note = CAP_REMARK.format(
            price=units_to_amount(price, tariff.currency),
            currency=tariff.currency,
            amount=units_to_amount(cap, tariff.currency),
        )
        remark = note if remark is None else f"{note}; {remark}"[:255]
    cdr = build_cdr(
        cdr_id=_ocpi_id(row.session_id),
        country_code=tariff.country_code,
        party_id=tariff.party_id,
        session_id=_ocpi_id(row.session_id),
        token=CdrToken(
            country_code=settings.escrow_msp_country_code,
            party_id=settings.escrow_msp_party_id,
            uid=_ocpi_id(row.id_token),
            type=TokenType.APP_USER,
            contract_id=_ocpi_id(row.driver_id),
        ),
        auth_method=AuthMethod.COMMAND,
        location=location_of(row, request),
        tariff=tariff,
        result=result,
        last_updated=now,
        signed_data=attached,
        remark=remark,
    )
    return Settlement(
        price=price,
        amount=result.total_incl_vat_units,
        cdr=cdr,
        cdr_hash="0x" + cdr_hash(cdr).hex(),
        meter_verified=verified,
        signed=signed,
    )


def meter_key(row: SessionRow, request: dict[str, Any], settings: EscrowSettings) -> str | None:
    """The station's meter public key (hex DER) if one is known and matches the chain's hash;
    ``request`` is the row's request data."""
    station: dict[str, Any] = request.get(STATION_KEY) or {}
    registered = str(station.get("meter_key_hash", "")).lower()
    for candidate in (
        request.get("meter_public_key"),
        settings.meter_keys().get(row.station_id.lower()),
    ):
        if isinstance(candidate, str) and candidate and _key_hash(candidate) == registered:
            return candidate
    return None


# Every settlement looks these up; a few stations' keys and tariffs serve many sessions.
@functools.lru_cache(maxsize=1024)
def _key_hash(key_hex: str) -> str | None:
    """The keccak of a hex DER key as the registry states it (None if it is not hex)."""
    try:
        return "0x" + keccak(bytes.fromhex(key_hex.removeprefix("0x"))).hex()
    except ValueError:
        return None


def _tariff(given: dict[str, Any]) -> Tariff:
    """The request's tariff, validated once per distinct document (models are not changed
    after validation: the pricing engine only reads them)."""
    return tariff_of(json.dumps(given, sort_keys=True, separators=(",", ":")))


def location_of(row: SessionRow, request: dict[str, Any]) -> CdrLocation:
    """The OCPI location the wallet sent with the request (``location``, in the row's request
    data ``request``), else one built from what the chain states about the station. Address
    fields the chain does not hold are marked as such rather than guessed."""
    given = request.get("location")
    if isinstance(given, dict):
        return CdrLocation.model_validate(given)
    station: dict[str, Any] = request.get(STATION_KEY) or {}
    evse = row.evse_id or f"{row.charge_point_id}*{row.connector_id}"
    return CdrLocation.model_validate(
        {
            "id": _ocpi_id(row.charge_point_id),
            "address": "not stated on chain",
            "city": "not stated on chain",
            "country": "ZZZ",
            "coordinates": {
                "latitude": _degrees(int(station.get("latitude_e6", 0))),
                "longitude": _degrees(int(station.get("longitude_e6", 0))),
            },
            "evse_uid": _ocpi_id(evse),
            "evse_id": evse[:48],
            "connector_id": str(row.connector_id),
            "connector_standard": "IEC_62196_T2",
            "connector_format": "SOCKET",
            "connector_power_type": "AC_3_PHASE",
        }
    )


def _signed_records(rows: Sequence[StoredSample]) -> list[str]:
    seen: set[str] = set()
    records: list[str] = []
    for row in sorted(rows, key=lambda r: (r.measured_at, r.id or 0)):
        for text in json.loads(row.signed_data) if row.signed_data else []:
            if text not in seen:
                seen.add(text)
                records.append(text)
    return records


def _degrees(micro: int) -> str:
    sign = "-" if micro < 0 else ""
    whole, fraction = divmod(abs(micro), 1_000_000)
    return f"{sign}{whole}.{fraction:06d}"


def _ocpi_id(value: str) -> str:
    """OCPI ids have at most 36 characters: longer ones are shortened to a stable digest."""
    if len(value) <= 36:
        return value
    return hashlib.sha256(value.encode()).hexdigest()[:36]
