"""A charge point's frames are answered in the order it sent them, whichever path each takes:
answered on the socket's read callback, or queued behind one whose handler has to wait (an id
token's grace period), a fragmented message or a binary frame."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.ocpp_sim import Protocol, open_socket
from tests.gateway.conftest import endpoint, escrow_opened, running_gateway

STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}


async def answers(socket: ClientConnection, count: int) -> list[list[Any]]:
    return [json.loads(await asyncio.wait_for(socket.recv(), 5)) for _ in range(count)]


def test_frames_behind_a_waiting_handler_are_answered_after_it_in_order(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus, authorize_grace_seconds=0.5) as gateway:
            socket = await open_socket(endpoint(gateway), "CP-1", Protocol.V16)
            # The token's escrow event is still on its way: Authorize waits for it.
            await socket.send(json.dumps([2, "auth", "Authorize", {"idTag": "LATE-TOKEN"}]))
            await socket.send(json.dumps([2, "hb-1", "Heartbeat", {}]))
            await socket.send(json.dumps([2, "status", "StatusNotification", STATUS]))
            await socket.send(json.dumps([2, "hb-2", "Heartbeat", {}]))
            await asyncio.sleep(0.1)
            bus.publish("sessions", escrow_opened("CP-1", "LATE-TOKEN"))
            got = await answers(socket, 4)
            assert [a[1] for a in got] == ["auth", "hb-1", "status", "hb-2"]
            assert got[0][2] == {"idTagInfo": {"status": "Accepted"}}
            # The queue drained: frames are answered at once again, still in order.
            for index in range(5):
                await socket.send(json.dumps([2, f"after-{index}", "Heartbeat", {}]))
            assert [a[1] for a in await answers(socket, 5)] == [f"after-{i}" for i in range(5)]
            await socket.close()

    asyncio.run(scenario())


def test_a_fragmented_message_and_a_binary_frame_keep_their_place(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            socket = await open_socket(endpoint(gateway), "CP-1", Protocol.V201)
            await socket.send(json.dumps([2, "first", "Heartbeat", {}]))
            await socket.send(['[2, "fragmented", ', '"Heartbeat", {}]'])
            await socket.send(b'[2, "binary", "Heartbeat", {}]')
            await socket.send(json.dumps([2, "last", "Heartbeat", {}]))
            got = await answers(socket, 4)
            assert [a[0] for a in got] == [3, 3, 4, 3]
            assert [a[1] for a in got[:2]] == ["first", "fragmented"]
            assert got[2][2] == "RpcFrameworkError"  # OCPP-J frames are text
            assert got[3][1] == "last"
            await socket.close()

    asyncio.run(scenario())
