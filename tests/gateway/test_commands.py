"""Commands to charge points: every action, both versions, deadlines, and two replicas."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from chargenet.core.bus import EventBus
from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.envelope import Envelope, make_envelope
from chargenet.core.events import GatewayCommand, gateway_commands_topic
from chargenet.core.ocpp_sim import ChargePoint16, ChargePoint201, Protocol, open_socket
from chargenet.gateway.events import ConnectionClaimed
from tests.gateway.conftest import CPO, endpoint, eventually, running_gateway

COMMANDS_16: list[tuple[str, dict[str, Any], str]] = [
    ("RemoteStartTransaction", {"idTag": "TOKEN-1", "connectorId": 1}, "Accepted"),
    ("RemoteStopTransaction", {"transactionId": 42}, "Accepted"),
    ("Reset", {"type": "Soft"}, "Accepted"),
    ("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}, "Accepted"),
    ("TriggerMessage", {"requestedMessage": "Heartbeat"}, "Accepted"),
    ("UnlockConnector", {"connectorId": 1}, "Unlocked"),
    ("GetConfiguration", {"key": ["HeartbeatInterval"]}, ""),
    ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}, "Accepted"),
]
COMMANDS_201: list[tuple[str, dict[str, Any], str]] = [
    (
        "RequestStartTransaction",
        {"idToken": {"idToken": "TOKEN-1", "type": "Central"}, "remoteStartId": 7, "evseId": 1},
        "Accepted",
    ),
    ("RequestStopTransaction", {"transactionId": "tx-1"}, "Accepted"),
    ("Reset", {"type": "Immediate"}, "Accepted"),
    ("ChangeAvailability", {"operationalStatus": "Inoperative"}, "Accepted"),
    ("TriggerMessage", {"requestedMessage": "Heartbeat"}, "Accepted"),
    ("UnlockConnector", {"evseId": 1, "connectorId": 1}, "Unlocked"),
    (
        "GetVariables",
        {
            "getVariableData": [
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
            ]
        },
        "",
    ),
    (
        "SetVariables",
        {
            "setVariableData": [
                {
                    "attributeValue": "60",
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                }
            ]
        },
        "",
    ),
]


def command(
    charge_point_id: str, action: str, payload: dict[str, Any], seconds: float = 5.0
) -> Envelope:
    data = GatewayCommand(
        command_id=uuid.uuid4().hex,
        charge_point_id=charge_point_id,
        action=action,
        payload=payload,
        deadline=datetime.now(UTC) + timedelta(seconds=seconds),
    )
    return make_envelope(data, subject=charge_point_id, source="tests/operator")


def issue(bus: EventBus, envelope: Envelope) -> str:
    bus.publish(gateway_commands_topic(CPO), envelope)
    return str(envelope.data["command_id"])


async def result_of(bus: InMemoryBus, command_id: str, within: float = 8.0) -> dict[str, Any]:
    found = await eventually(
        lambda: [e for e in bus.events("gateway-results") if e.subject == command_id], within
    )
    assert len(found) == 1, found
    data: dict[str, Any] = found[0].data
    return data


def test_every_command_reaches_a_16_charge_point(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            cp = await ChargePoint16.connect(endpoint(gateway), "CP-1")
            await cp.boot()
            await eventually(lambda: "CP-1" in gateway.connections)
            for action, payload, status in COMMANDS_16:
                result = await result_of(bus, issue(bus, command("CP-1", action, payload)))
                assert result["status"] == "accepted", result
                assert result.get("ocpp_status") == (status or None)
                assert any(c.action == action for c in cp.received)
            assert cp.configuration["HeartbeatInterval"] == "60"
            # A refusal by the charge point is a rejected result.
            cp.answers["Reset"] = "Rejected"
            refused = await result_of(bus, issue(bus, command("CP-1", "Reset", {"type": "Hard"})))
            assert refused["status"] == "rejected" and refused["ocpp_status"] == "Rejected"
            # A 2.0.1 action is not a 1.6 command; a schema-invalid payload never leaves.
            wrong = await result_of(bus, issue(bus, command("CP-1", "GetVariables", {})))
            assert wrong["status"] == "error" and "OCPP" in wrong["error"]
            invalid = await result_of(bus, issue(bus, command("CP-1", "Reset", {"type": "Never"})))
            assert invalid["status"] == "error"
            await cp.close()

    asyncio.run(scenario())


def test_every_command_reaches_a_201_station(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            station = await ChargePoint201.connect(endpoint(gateway), "CP-1")
            await station.boot()
            await eventually(lambda: "CP-1" in gateway.connections)
            for action, payload, status in COMMANDS_201:
                result = await result_of(bus, issue(bus, command("CP-1", action, payload)))
                assert result["status"] == "accepted", result
                assert result.get("ocpp_status") == (status or None)
            assert station.variables[("OCPPCommCtrlr", "HeartbeatInterval")] == "60"
            await station.close()

    asyncio.run(scenario())


def test_deadlines_and_absent_charge_points(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            # A charge point that never answers: the command times out at its deadline.
            silent = await open_socket(endpoint(gateway), "CP-1", Protocol.V16)
            await eventually(lambda: "CP-1" in gateway.connections)
            slow = command("CP-1", "Reset", {"type": "Soft"}, seconds=0.5)
            result = await result_of(bus, issue(bus, slow))
            assert result["status"] == "timed_out"
            late = command("CP-1", "Reset", {"type": "Soft"}, seconds=-1)
            assert (await result_of(bus, issue(bus, late)))["status"] == "timed_out"
            await silent.close()
            # Gone: the replica that held the socket answers for it.
            await eventually(lambda: "CP-1" not in gateway.connections)
            await asyncio.sleep(0.2)
            gone = await result_of(bus, issue(bus, command("CP-1", "Reset", {"type": "Soft"})))
            assert gone["status"] == "error" and gone["error"] == "not connected"

    asyncio.run(scenario())


def test_a_socket_a_newer_claim_replaced_runs_no_command_while_it_closes(
    bus: InMemoryBus,
) -> None:
    """The charge point reconnected elsewhere and a command follows the claim at once: the old
    socket is still open (its close handshake under way), but only the new owner may run it. The
    old one ran it too, and its answer (often an error from the closing socket) was a second,
    contradictory result for the same command."""

    async def scenario() -> None:
        async with running_gateway(bus, replica_id="replica-b") as b:
            cp_on_b = await ChargePoint16.connect(endpoint(b), "CP-1")
            await cp_on_b.boot()
            await eventually(lambda: "CP-1" in b.connections)
            held = b.connections["CP-1"]
            # Replica A's claim of a newer connection, and a command right behind it.
            claim = ConnectionClaimed(
                charge_point_id="CP-1",
                replica_id="replica-a",
                connection_id=uuid.uuid4().hex,
                connected_at=held.connected_at + timedelta(seconds=1),
            )
            bus.publish(
                gateway_commands_topic(CPO), make_envelope(claim, subject="CP-1", source="tests/a")
            )
            reset = issue(bus, command("CP-1", "Reset", {"type": "Soft"}))
            await eventually(lambda: "CP-1" not in b.connections)
            await asyncio.sleep(0.5)
            assert [e for e in bus.events("gateway-results") if e.subject == reset] == []
            assert [c.action for c in cp_on_b.received] == []

    asyncio.run(scenario())


def test_two_replicas_route_commands_and_keep_the_newest_socket(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with (
            running_gateway(bus, replica_id="replica-a") as a,
            running_gateway(bus, replica_id="replica-b") as b,
        ):
            cp_on_b = await ChargePoint16.connect(endpoint(b), "CP-1")
            await cp_on_b.boot()
            await eventually(lambda: "CP-1" in b.connections)
            result = await result_of(bus, issue(bus, command("CP-1", "Reset", {"type": "Soft"})))
            assert result["status"] == "accepted" and result["replica_id"] == "replica-b"
            assert [c.action for c in cp_on_b.received] == ["Reset"]

            # The charge point reconnects to replica A: B closes its older socket.
            cp_on_a = await ChargePoint16.connect(endpoint(a), "CP-1")
            await cp_on_a.boot()
            await eventually(lambda: "CP-1" not in b.connections)
            assert cp_on_b.socket.close_code == 4001
            moved = await result_of(bus, issue(bus, command("CP-1", "Reset", {"type": "Hard"})))
            assert moved["status"] == "accepted" and moved["replica_id"] == "replica-a"
            assert [c.action for c in cp_on_a.received] == ["Reset"]
            # Exactly one result per command, although both replicas saw both commands.
            assert len(bus.events("gateway-results")) == 2
            await cp_on_a.close()

    asyncio.run(scenario())
