"""Bad input: each gets the right CALLERROR or a closed socket with a logged reason, and the other
charge points on the same gateway keep working."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from ocpp.exceptions import OCPPError, PropertyConstraintViolationError
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.ocpp_sim import ChargePoint16, Protocol, open_socket
from chargenet.gateway.metrics import REJECTED_FRAMES
from tests.gateway.conftest import endpoint, events_of, eventually, running_gateway

STATUS_OK = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}


async def exchange(socket: ClientConnection, frame: str) -> list[Any]:
    await socket.send(frame)
    answer: list[Any] = json.loads(await asyncio.wait_for(socket.recv(), 5))
    return answer


def rejected(reason: str) -> float:
    return float(REJECTED_FRAMES.labels(reason)._value.get())


@pytest.mark.parametrize(
    ("protocol", "frame", "message_id", "code"),
    [
        # Malformed JSON: the id cannot be read, so the answer carries "-1".
        (Protocol.V16, '[2, "1", "Heartbeat", {', "-1", "FormationViolation"),
        (Protocol.V201, '[2, "1", "Heartbeat", {', "-1", "FormatViolation"),
        # Valid JSON that is not an OCPP-J message.
        (Protocol.V16, '{"hello": "world"}', "-1", "ProtocolError"),
        (Protocol.V201, '{"hello": "world"}', "-1", "RpcFrameworkError"),
        (Protocol.V201, '[9, "2", "Heartbeat", {}]', "2", "MessageTypeNotSupported"),
        (Protocol.V16, '[2, "3", "Heartbeat"]', "3", "ProtocolError"),
        (Protocol.V16, '[2, "3b", "Heartbeat", []]', "3b", "FormationViolation"),
        # Unknown action, and a known action the central system does not take.
        (Protocol.V16, '[2, "4", "MakeCoffee", {}]', "4", "NotImplemented"),
        (Protocol.V201, '[2, "4", "MakeCoffee", {}]', "4", "NotImplemented"),
        (Protocol.V16, '[2, "5", "Reset", {"type": "Soft"}]', "5", "NotSupported"),
        (Protocol.V201, '[2, "5", "../../v16/schemas/Reset", {}]', "5", "NotImplemented"),
        # Schema-invalid payloads, named by what they break.
        (
            Protocol.V16,
            '[2, "6", "StatusNotification", {"connectorId": 1}]',
            "6",
            "OccurenceConstraintViolation",
        ),
        (Protocol.V201, '[2, "6", "Authorize", {}]', "6", "OccurrenceConstraintViolation"),
        (
            Protocol.V16,
            json.dumps([2, "7", "StatusNotification", {**STATUS_OK, "connectorId": "x"}]),
            "7",
            "TypeConstraintViolation",
        ),
        (
            Protocol.V16,
            json.dumps([2, "8", "StatusNotification", {**STATUS_OK, "status": "Fine"}]),
            "8",
            "PropertyConstraintViolation",
        ),
        (Protocol.V16, json.dumps([2, "9", "Heartbeat", {"extra": 1}]), "9", "FormationViolation"),
    ],
)
def test_bad_frames_get_the_right_callerror(
    bus: InMemoryBus, protocol: Protocol, frame: str, message_id: str, code: str
) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            socket = await open_socket(endpoint(gateway), "CP-1", protocol)
            answer = await exchange(socket, frame)
            assert answer[:3] == [4, message_id, code], answer
            # The socket stays usable.
            assert (await exchange(socket, '[2, "ok", "Heartbeat", {}]'))[0] == 3
            await socket.close()

    asyncio.run(scenario())


def test_result_for_an_unknown_message_id_is_ignored_and_logged(
    bus: InMemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            socket = await open_socket(endpoint(gateway), "CP-1", Protocol.V16)
            before = rejected("unknown_message_id")
            await socket.send('[3, "never-sent", {"status": "Accepted"}]')
            await socket.send('[4, "never-sent-2", "GenericError", "", {}]')
            # No answer to either; the next CALL is answered normally.
            answer = await exchange(socket, '[2, "hb", "Heartbeat", {}]')
            assert answer[:2] == [3, "hb"]
            assert rejected("unknown_message_id") == before + 2
            await socket.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert "unknown message id never-sent" in caplog.text


def test_oversized_frame_closes_only_that_socket(
    bus: InMemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with running_gateway(bus, ("CP-1", "CP-2"), max_frame_bytes=4096) as gateway:
            bystander = await ChargePoint16.connect(endpoint(gateway), "CP-2")
            socket = await open_socket(endpoint(gateway), "CP-1", Protocol.V16)
            await socket.send(json.dumps([2, "big", "DataTransfer", {"vendorId": "x" * 8000}]))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(socket.recv(), 5)
            assert socket.close_code == 1009
            assert (await bystander.heartbeat()).current_time
            await eventually(
                lambda: events_of(bus, "charge-points", "chargenet.charge_point.disconnected.v1")
            )
            await bystander.close()

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert "CP-1 disconnected: frame larger than max_frame_bytes" in caplog.text


def test_a_flood_closes_the_flooder_and_no_one_else(
    bus: InMemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with running_gateway(
            bus, ("CP-1", "CP-2"), rate_limit_per_second=5, rate_limit_burst=10
        ) as gateway:
            bystander = await ChargePoint16.connect(endpoint(gateway), "CP-2")
            flooder = await open_socket(endpoint(gateway), "CP-1", Protocol.V16)
            for index in range(50):
                try:
                    await flooder.send(f'[2, "f{index}", "Heartbeat", {{}}]')
                except ConnectionClosed:
                    break
            answered = 0
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(flooder.recv(), 5)
                    answered += 1
            assert answered == 10  # the burst, then the door
            assert flooder.close_code == 1008
            assert (await bystander.heartbeat()).current_time
            await bystander.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert "closing CP-1: rate limit exceeded" in caplog.text


def test_a_charge_point_that_does_not_read_its_answers_stops_being_read(bus: InMemoryBus) -> None:
    """Answers are written on the read callback, so nothing awaits the socket's drain there:
    when the transport's buffer is full (its pause_writing) the gateway stops reading that
    charge point instead of buffering answers without bound, and reads on once it drains."""

    async def scenario() -> None:
        async with running_gateway(bus, ("CP-1", "CP-2")) as gateway:
            bystander = await ChargePoint16.connect(endpoint(gateway), "CP-2")
            socket = await open_socket(endpoint(gateway), "CP-1", Protocol.V16)
            assert (await exchange(socket, '[2, "first", "Heartbeat", {}]'))[1] == "first"
            server_side = gateway.connections["CP-1"].ws
            transport = server_side.transport
            # What the transport does when the peer's unread answers fill its buffer.
            server_side.pause_writing()
            await socket.send('[2, "while-full", "Heartbeat", {}]')
            await eventually(lambda: not transport.is_reading())
            assert (await bystander.heartbeat()).current_time  # the others are read on
            server_side.resume_writing()
            assert transport.is_reading()
            answer = json.loads(await asyncio.wait_for(socket.recv(), 5))
            assert answer[:2] == [3, "while-full"]
            assert (await exchange(socket, '[2, "after", "Heartbeat", {}]'))[1] == "after"
            await socket.close()
            await bystander.close()

    asyncio.run(scenario())


def test_relaxed_action_lets_known_bad_firmware_through(
    bus: InMemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    bad_status = json.dumps([2, "r1", "StatusNotification", {**STATUS_OK, "status": "Fine"}])

    async def scenario() -> None:
        async with running_gateway(bus, relaxed_schema_actions=["StatusNotification"]) as gateway:
            socket = await open_socket(endpoint(gateway), "CP-1", Protocol.V16)
            assert await exchange(socket, bad_status) == [3, "r1", {}]
            # Only that action is relaxed.
            bad_heartbeat = await exchange(socket, '[2, "r2", "Heartbeat", {"x": 1}]')
            assert bad_heartbeat[2] == "FormationViolation"
            # Relaxed but unusable (no connector id) is still refused, not a crash.
            unusable = await exchange(socket, '[2, "r3", "StatusNotification", {"status": "x"}]')
            assert unusable[2] == "FormationViolation"
            await socket.close()
            status = await eventually(
                lambda: events_of(bus, "charge-points", "chargenet.charge_point.status_changed.v1")
            )
            assert status[0].data["status"] == "Fine"

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert "relaxed StatusNotification from CP-1" in caplog.text


def test_a_simulator_that_skips_its_checks_still_meets_the_gateways(
    bus: InMemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    """The benchmark's charge points skip the library's schema check (``check_messages=False``,
    to spare the harness's CPU); what they send is checked by the gateway all the same."""

    async def scenario() -> None:
        async with running_gateway(bus, ("CP-1", "CP-2")) as gateway:
            checked = await ChargePoint16.connect(endpoint(gateway), "CP-1")
            unchecked = await ChargePoint16.connect(endpoint(gateway), "CP-2", check_messages=False)
            # The checked simulator refuses to send a status OCPP 1.6 does not have.
            with pytest.raises(OCPPError):
                await checked.status(1, "Fine")
            assert "rejected frame from CP-1" not in caplog.text
            # The unchecked one sends it, and the gateway answers with a CALLERROR.
            with pytest.raises(PropertyConstraintViolationError):
                await unchecked.status(1, "Fine")
            assert "rejected frame from CP-2" in caplog.text
            # Valid messages still pass both ways without the checks.
            assert (await unchecked.heartbeat()).current_time
            await checked.close()
            await unchecked.close()

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
