"""Every event chargenet publishes: one documented, versioned schema per type.

Rules: the type is ``chargenet.<domain>.<event>.v<N>``; within a version fields are only added
(with defaults), never removed or re-typed; a breaking change is a new version published beside
the old one until every consumer moved. The envelope's ``subject`` is the Kafka key given per
topic below, so every event about one session (or charge point, ...) keeps its order. Amounts are
integers in token base units (6 decimals); energy in Wh; times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from chargenet.core.envelope import EventData


class Topic(StrEnum):
    SESSIONS = "sessions"  # key: session id
    GATEWAY_RESULTS = "gateway-results"  # key: command id
    CHARGE_POINTS = "charge-points"  # key: charge point id
    STATIONS = "stations"  # key: station id
    INVOICES = "invoices"  # key: CPO id


def gateway_commands_topic(cpo_id: str) -> str:
    """Each CPO's gateway replicas read only their own CPO's commands (key: charge point id)."""
    return f"gateway-commands.{cpo_id}"


# -- sessions ------------------------------------------------------------------------------------
class _SessionEvent(EventData):
    topic: ClassVar[str] = Topic.SESSIONS
    session_id: str


class BillingDetails(BaseModel):
    """The buyer of a session's invoice (EN 16931 BG-7, postal address BG-8), from the wallet.

    ``country`` (ISO 3166-1 alpha-2) is always set: the driver's own, or the wallet's default
    billing country when the driver gave none; the other fields only when the driver gave them.
    """

    model_config = ConfigDict(frozen=True)

    name: str | None = None
    street: str | None = None
    postcode: str | None = None
    city: str | None = None
    country: str


class SessionRequested(_SessionEvent):
    """A driver asked to charge (wallet -> escrow).

    It carries everything the escrow needs to open on chain without asking anyone: the driver's
    EIP-712 authorisation (signed by the driver's key in the signer) and the station's OCPI tariff
    document, whose keccak hash the escrow checks against the registry contract before locking.
    """

    event_type: ClassVar[str] = "chargenet.session.requested.v1"
    driver_id: str
    driver_address: str
    cpo_id: str
    station_id: str  # 0x-hex bytes32, the registry contract's id
    charge_point_id: str
    connector_id: int
    evse_id: str | None = None
    max_amount: int
    id_token: str
    idempotency_key: str
    chain_session_id: str  # 0x-hex bytes32: chargenet.core.chain.session_id(driver, nonce)
    driver_nonce: int
    expiry: datetime
    authorisation_r: str  # 0x-hex, EIP-2098 compact signature of OpenSession
    authorisation_vs: str
    tariff: dict[str, Any]
    time_zone: str = "UTC"
    ocpp_evse_id: int | None = None  # OCPP 2.0.1's EVSE number; None for 1.6
    registry_station_id: str | None = None  # the registry's (OCPI) id of the station
    #: Who the session's invoice is made out to (read by invoicing); None from a wallet that
    #: predates it, which invoicing treats like a driver without billing details.
    billing: BillingDetails | None = None


class EscrowOpened(_SessionEvent):
    """The maximum is locked on chain and final; the gateway may now let energy flow."""

    event_type: ClassVar[str] = "chargenet.session.escrow_opened.v1"
    cpo_id: str
    station_id: str
    charge_point_id: str
    connector_id: int
    id_token: str
    max_amount: int
    expires_at: datetime
    tx_hash: str


class SessionStarted(_SessionEvent):
    """The charge point started the transaction (gateway -> escrow)."""

    event_type: ClassVar[str] = "chargenet.session.started.v1"
    charge_point_id: str
    connector_id: int
    transaction_id: str
    meter_start_wh: int
    started_at: datetime


class MeterReading(_SessionEvent):
    """One sample of the session's meter; ``signed_data`` byte-exact as the meter signed it."""

    event_type: ClassVar[str] = "chargenet.session.meter.v1"
    charge_point_id: str
    transaction_id: str
    energy_wh: int
    power_w: int | None = None
    current_a: str | None = None  # a decimal string: not money, but kept exact all the same
    measured_at: datetime
    signed_data: str | None = None


class StopRequested(_SessionEvent):
    """Someone asked to stop: the driver, the budget check, or an operator."""

    event_type: ClassVar[str] = "chargenet.session.stop_requested.v1"
    reason: str


class SessionStopped(_SessionEvent):
    """The charge point ended the transaction (or the gateway lost it and gave up)."""

    event_type: ClassVar[str] = "chargenet.session.stopped.v1"
    charge_point_id: str
    transaction_id: str
    meter_stop_wh: int
    stopped_at: datetime
    reason: str
    signed_data: list[str] = []


class SessionPriced(_SessionEvent):
    """The escrow priced the CDR with the station's tariff."""

    event_type: ClassVar[str] = "chargenet.session.priced.v1"
    amount: int
    cdr_hash: str
    cdr: dict[str, Any]


class SessionSettled(_SessionEvent):
    """The escrow settled on chain: the CPO has ``amount_settled``, the driver the rest back."""

    event_type: ClassVar[str] = "chargenet.session.settled.v1"
    cpo_id: str
    driver_id: str
    station_id: str
    evse_id: str | None = None
    amount_locked: int
    amount_settled: int
    cdr: dict[str, Any]
    cdr_hash: str
    tariff: dict[str, Any]
    settlement_tx_hash: str
    meter_verified: bool
    signed_meter_data: list[str] = []
    #: The tariff's price incl. VAT when it exceeded the locked maximum and ``amount_settled``
    #: is that maximum (a late budget stop); None when the price was settled in full.
    price_before_cap: int | None = None


class SessionCancelled(_SessionEvent):
    """The session will not charge (rejected start, no start in time, escrow failure)."""

    event_type: ClassVar[str] = "chargenet.session.cancelled.v1"
    reason: str


class SessionRefunded(_SessionEvent):
    """The locked amount went back to the driver on chain."""

    event_type: ClassVar[str] = "chargenet.session.refunded.v1"
    amount: int
    tx_hash: str


class SessionFailed(_SessionEvent):
    """Something that needs an operator: the session could neither settle nor refund."""

    event_type: ClassVar[str] = "chargenet.session.failed.v1"
    reason: str


# -- gateway commands and results ----------------------------------------------------------------
class CommandStatus(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    ERROR = "error"


class GatewayCommand(EventData):
    """An instruction for one charge point; executed by the replica that holds its socket.

    ``topic`` is per CPO: publish to ``gateway_commands_topic(cpo_id)``.
    """

    event_type: ClassVar[str] = "chargenet.gateway.command.v1"
    topic: ClassVar[str] = "gateway-commands"
    command_id: str
    charge_point_id: str
    action: str  # the OCPP action, e.g. RemoteStartTransaction or RequestStartTransaction
    payload: dict[str, Any]
    deadline: datetime
    session_id: str | None = None


class CommandResult(EventData):
    """What became of a gateway command (accepted, rejected, timed out, error)."""

    event_type: ClassVar[str] = "chargenet.gateway.command_result.v1"
    topic: ClassVar[str] = Topic.GATEWAY_RESULTS
    command_id: str
    charge_point_id: str
    action: str
    status: CommandStatus
    response: dict[str, Any] = {}
    error: str | None = None
    session_id: str | None = None


# -- charge points -------------------------------------------------------------------------------
class _ChargePointEvent(EventData):
    topic: ClassVar[str] = Topic.CHARGE_POINTS
    charge_point_id: str
    cpo_id: str


class ChargePointBooted(_ChargePointEvent):
    """A charge point sent BootNotification and was accepted."""

    event_type: ClassVar[str] = "chargenet.charge_point.booted.v1"
    ocpp_version: str
    vendor: str
    model: str
    firmware_version: str | None = None


class ConnectorStatusChanged(_ChargePointEvent):
    """A connector reported a new status (StatusNotification)."""

    event_type: ClassVar[str] = "chargenet.charge_point.status_changed.v1"
    connector_id: int
    evse_id: int | None = None
    status: str  # OCPP status: Available, Occupied/Charging, Faulted, Unavailable, ...
    error_code: str | None = None
    reported_at: datetime


class ChargePointDisconnected(_ChargePointEvent):
    """The charge point's socket closed (or a newer socket replaced it elsewhere)."""

    event_type: ClassVar[str] = "chargenet.charge_point.disconnected.v1"
    reason: str


# -- stations ------------------------------------------------------------------------------------
class _StationEvent(EventData):
    topic: ClassVar[str] = Topic.STATIONS
    station_id: str
    cpo_address: str
    block_number: int
    tx_hash: str


class StationRegistered(_StationEvent):
    """A station was registered on chain (indexed by the registry at confirmation depth)."""

    event_type: ClassVar[str] = "chargenet.station.registered.v1"
    latitude_micro: int
    longitude_micro: int
    connector_count: int
    max_power_w: int
    tariff_id: str
    tariff_hash: str
    meter_key_hash: str


class StationUpdated(StationRegistered):
    """A station's on-chain record changed."""

    event_type: ClassVar[str] = "chargenet.station.updated.v1"


class StationRetired(_StationEvent):
    """A station was retired on chain: no new sessions may open there."""

    event_type: ClassVar[str] = "chargenet.station.retired.v1"


# -- invoices ------------------------------------------------------------------------------------
class InvoiceIssued(EventData):
    """The CPO's invoice for a settled session exists and can be downloaded."""

    event_type: ClassVar[str] = "chargenet.invoice.issued.v1"
    topic: ClassVar[str] = Topic.INVOICES
    invoice_number: str
    cpo_id: str
    driver_id: str
    session_id: str
    total_incl_vat: int
    currency: str


ALL_EVENTS: tuple[type[EventData], ...] = (
    SessionRequested,
    EscrowOpened,
    SessionStarted,
    MeterReading,
    StopRequested,
    SessionStopped,
    SessionPriced,
    SessionSettled,
    SessionCancelled,
    SessionRefunded,
    SessionFailed,
    GatewayCommand,
    CommandResult,
    ChargePointBooted,
    ConnectorStatusChanged,
    ChargePointDisconnected,
    StationRegistered,
    StationUpdated,
    StationRetired,
    InvoiceIssued,
)

EVENT_TYPES: dict[str, type[EventData]] = {cls.event_type: cls for cls in ALL_EVENTS}
