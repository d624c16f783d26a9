"""Events: the shared catalogue (``chargenet.core.events``) plus the gateway's own socket claims.

Claims and releases are internal to one CPO's gateway replicas: they travel on that CPO's command
topic, keyed by charge point id, so they are ordered with the commands for the same charge point.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from chargenet.core.envelope import EventData
from chargenet.core.events import (
    ChargePointBooted,
    ChargePointDisconnected,
    CommandResult,
    CommandStatus,
    ConnectorStatusChanged,
    EscrowOpened,
    GatewayCommand,
    MeterReading,
    SessionStarted,
    SessionStopped,
    Topic,
    gateway_commands_topic,
)

SESSIONS_TOPIC = Topic.SESSIONS.value
RESULTS_TOPIC = Topic.GATEWAY_RESULTS.value
CHARGE_POINTS_TOPIC = Topic.CHARGE_POINTS.value

#: Session events after which an id token no longer opens anything.
SESSION_CLOSING_TYPES = frozenset(
    {
        "chargenet.session.stopped.v1",
        "chargenet.session.cancelled.v1",
        "chargenet.session.refunded.v1",
        "chargenet.session.failed.v1",
        "chargenet.session.settled.v1",
    }
)


class ConnectionClaimed(EventData):
    """A replica took a charge point's socket: older holders close theirs."""

    event_type: ClassVar[str] = "chargenet.gateway.connection_claimed.v1"
    topic: ClassVar[str] = "gateway-commands"

    charge_point_id: str
    replica_id: str
    connection_id: str
    connected_at: datetime


class ConnectionReleased(EventData):
    """A replica's socket for a charge point closed (not replaced): it answers for it meanwhile."""

    event_type: ClassVar[str] = "chargenet.gateway.connection_released.v1"
    topic: ClassVar[str] = "gateway-commands"

    charge_point_id: str
    replica_id: str
    connection_id: str


__all__ = [
    "CHARGE_POINTS_TOPIC",
    "RESULTS_TOPIC",
    "SESSIONS_TOPIC",
    "SESSION_CLOSING_TYPES",
    "ChargePointBooted",
    "ChargePointDisconnected",
    "CommandResult",
    "CommandStatus",
    "ConnectionClaimed",
    "ConnectionReleased",
    "ConnectorStatusChanged",
    "EscrowOpened",
    "GatewayCommand",
    "MeterReading",
    "SessionStarted",
    "SessionStopped",
    "gateway_commands_topic",
]
