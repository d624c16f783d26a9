"""CPO changes: validate, keep the documents, send the registry call through the signer.

The chain stays the source of truth: a change shows in the index only once its transaction is
mined and confirmed. Everything is checked before the signer is asked, and the documents are
stored only after it accepted the transaction, so a refused request leaves nothing behind; a
retry sends the same idempotency key, so the signer returns the first transaction, never two.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import sqlalchemy as sa
from eth_utils.crypto import keccak
from sqlalchemy.orm import Session

from chargenet.core.db import Database
from chargenet.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from chargenet.core.signer_client import SignerClient, SignerError, Transaction
from chargenet.registry.chain import station_bytes
from chargenet.registry.documents import (
    ChainRecord,
    CheckedLocation,
    CheckedTariff,
    canonical_text,
    location_mismatches,
    tariff_mismatches,
)
from chargenet.registry.models import Connector, Document, Location, Station

_HASH = 66


class SignerUnavailable(Conflict):
    status_code = 502
    code = "signer_unavailable"


@dataclass(frozen=True)
class StationChange:
    station_id: str
    location: CheckedLocation
    tariff: CheckedTariff
    meter_key_hash: str

    def record(self) -> ChainRecord:
        return ChainRecord(
            station_id=self.station_id,
            latitude_e6=self.location.latitude_e6,
            longitude_e6=self.location.longitude_e6,
            connector_count=len(self.location.connectors),
            max_power_w=self.location.max_power_w,
            tariff_id=self.tariff.tariff_id,
            tariff_hash=self.tariff.hash,
        )

    def info(self) -> dict[str, Any]:
        """StationRegistry.StationInfo as the signer takes it (a tuple by field name)."""
        record = self.record()
        return {
            "latitudeE6": record.latitude_e6,
            "longitudeE6": record.longitude_e6,
            "connectorCount": record.connector_count,
            "maxPowerW": record.max_power_w,
            "tariffId": "0x" + record.tariff_id.encode().ljust(32, b"\0").hex(),
            "tariffHash": record.tariff_hash,
            "meterKeyHash": self.meter_key_hash,
        }

    def fingerprint(self) -> str:
        return keccak(text=repr(sorted(self.info().items()))).hex()[:16]


def call_key(operation: str, station_id: str, args: list[Any]) -> str:
    """The signer's idempotency key of a registry call: the same call is one transaction (a retry
    gets it back), a different one is a new operation. By the station alone, a call the signer
    refused (kept under its key) would also refuse every corrected request after it."""
    # Every string in a call is hex (ids, hashes, addresses), whose case changes nothing sent.
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":")).lower()
    return f"registry:{operation}:{station_id}:{keccak(text=canonical).hex()[:16]}"


def check_hash(value: str, what: str) -> str:
    text = value.lower()
    if len(text) != _HASH or not text.startswith("0x"):
        raise Unprocessable(f"{what}: expected 0x and 64 hex digits")
    try:
        bytes.fromhex(text[2:])
    except ValueError:
        raise Unprocessable(f"{what}: expected 0x and 64 hex digits") from None
    return text


def check_station_id(station_id: str) -> bytes:
    try:
        return station_bytes(station_id)
    except (ValueError, UnicodeEncodeError):
        raise Unprocessable(
            f"station id {station_id!r}: 1-32 printable ASCII characters without spaces"
        ) from None


def new_change(
    station_id: str, location: CheckedLocation, tariff: CheckedTariff, meter_key_hash: str
) -> StationChange:
    check_station_id(station_id)
    change = StationChange(
        station_id, location, tariff, check_hash(meter_key_hash, "meter_key_hash")
    )
    reasons = location_mismatches(location, change.record())  # the id must match, at least
    if reasons:
        raise Unprocessable("location: " + "; ".join(reasons))
    return change


class ChainWriter:
    """Sends registry calls through the signer from the key configured for each CPO."""

    def __init__(self, signer: SignerClient, cpo_keys: dict[str, str], contract: str) -> None:
        self.signer = signer
        self.cpo_keys = cpo_keys
        self.contract = contract
        self._addresses: dict[str, str] = {}
        self._lock = threading.Lock()

    def key_of(self, cpo_id: str) -> str:
        key = self.cpo_keys.get(cpo_id)
        if key is None:
            raise Forbidden(f"CPO {cpo_id!r} has no signing key configured in this registry")
        return key

    def address_of(self, cpo_id: str) -> str:
        key = self.key_of(cpo_id)
        with self._lock:
            if key not in self._addresses:
                try:
                    keys = {k.alias: k.address for k in self.signer.list_keys()}
                except SignerError as error:
                    raise SignerUnavailable(f"the signer did not answer: {error}") from None
                self._addresses.update(keys)
            address = self._addresses.get(key)
        if address is None:
            raise Forbidden(f"the signer has no key {key!r} for CPO {cpo_id!r}")
        return address

    def send(
        self, idempotency_key: str, cpo_id: str, function: str, args: list[Any]
    ) -> Transaction:
        try:
            tx = self.signer.send_transaction(
                idempotency_key, self.key_of(cpo_id), function, args, contract=self.contract
            )
        except SignerError as error:
            if error.code is grpc.StatusCode.ALREADY_EXISTS:
                # Another request's call under this key (e.g. another CPO's, same station and
                # documents): the caller's to resolve, not the signer down.
                raise Conflict(
                    f"{function}: a different request already went to the signer under"
                    f" {idempotency_key}"
                ) from None
            raise SignerUnavailable(f"the signer refused {function}: {error.detail}") from None
        if tx.error or tx.revert_reason:
            raise Unprocessable(f"{function} would fail on chain: {tx.revert_reason or tx.error}")
        return tx


def owned_station(session: Session, station_id: str, cpo_address: str) -> Station:
    station = session.get(Station, station_id)
    if station is None:
        raise NotFound(f"no station {station_id} on chain (or not yet confirmed)")
    if station.cpo_address.lower() != cpo_address.lower():
        raise Forbidden(f"station {station_id} belongs to another CPO")
    if not station.active:
        raise Conflict(f"station {station_id} is retired")
    return station


def record_of(station: Station) -> ChainRecord:
    return ChainRecord(
        station_id=station.station_id,
        latitude_e6=station.latitude_e6,
        longitude_e6=station.longitude_e6,
        connector_count=station.connector_count,
        max_power_w=station.max_power_w,
        tariff_id=station.tariff_id,
        tariff_hash=station.tariff_hash,
    )


def store_document(session: Session, kind: str, document: dict[str, Any], doc_hash: str) -> None:
    if session.get(Document, doc_hash) is None:
        session.add(
            Document(
                hash=doc_hash,
                kind=kind,
                body=canonical_text(document),
                created_at=datetime.now(UTC),
            )
        )
        session.flush()


def store_location(session: Session, station_id: str, location: CheckedLocation) -> None:
    store_document(session, "location", location.document, location.hash)
    session.execute(sa.delete(Connector).where(Connector.station_id == station_id))
    existing = session.get(Location, station_id)
    if existing is None:
        existing = Location(station_id=station_id)
        session.add(existing)
    existing.document_hash = location.hash
    existing.name = location.model.name
    existing.latitude_e6 = location.latitude_e6
    existing.longitude_e6 = location.longitude_e6
    existing.updated_at = datetime.now(UTC)
    session.flush()
    for row in location.connectors:
        session.add(Connector(station_id=station_id, **vars(row)))


def attach_location(
    db: Database, station_id: str, cpo_address: str, location: CheckedLocation
) -> None:
    with db.session() as session:
        station = owned_station(session, station_id, cpo_address)
        reasons = location_mismatches(location, record_of(station))
        if reasons:
            raise Unprocessable("location does not match the chain: " + "; ".join(reasons))
        store_location(session, station_id, location)


def attach_tariff(db: Database, station_id: str, cpo_address: str, tariff: CheckedTariff) -> None:
    with db.session() as session:
        station = owned_station(session, station_id, cpo_address)
        reasons = tariff_mismatches(tariff, record_of(station))
        if reasons:
            raise Unprocessable("tariff does not match the chain: " + "; ".join(reasons))
        store_document(session, "tariff", tariff.document, tariff.hash)
