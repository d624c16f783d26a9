"""Session commands in either version's words reach a charge point in its own version's words."""

from __future__ import annotations

import asyncio

from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.ocpp_sim import ChargePoint16, ChargePoint201
from chargenet.gateway.translate import remote_start_id
from tests.gateway.conftest import endpoint, eventually, running_gateway
from tests.gateway.test_commands import command, issue, result_of


def test_16_commands_reach_a_201_station_as_request_commands(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            station = await ChargePoint201.connect(endpoint(gateway), "CP-1")
            await station.boot()
            await eventually(lambda: "CP-1" in gateway.connections)
            start = command(
                "CP-1", "RemoteStartTransaction", {"idTag": "TOKEN-1", "connectorId": 2}
            )
            result = await result_of(bus, issue(bus, start))
            assert result["status"] == "accepted" and result["action"] == "RemoteStartTransaction"
            received = await station.wait_for_command("RequestStartTransaction")
            assert received.payload == {
                "id_token": {"id_token": "TOKEN-1", "type": "Central"},
                "remote_start_id": remote_start_id(start.data["command_id"]),
                "evse_id": 2,
            }
            stop = command("CP-1", "RemoteStopTransaction", {"transactionId": "tx-9"})
            assert (await result_of(bus, issue(bus, stop)))["status"] == "accepted"
            stopped = await station.wait_for_command("RequestStopTransaction")
            assert stopped.payload == {"transaction_id": "tx-9"}
            await station.close()

    asyncio.run(scenario())


def test_201_commands_reach_a_16_charge_point_as_remote_commands(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            cp = await ChargePoint16.connect(endpoint(gateway), "CP-1")
            await cp.boot()
            await eventually(lambda: "CP-1" in gateway.connections)
            start = command(
                "CP-1",
                "RequestStartTransaction",
                {"idToken": {"idToken": "TOKEN-2", "type": "Central"}, "remoteStartId": 5},
            )
            assert (await result_of(bus, issue(bus, start)))["status"] == "accepted"
            assert (await cp.wait_for_command("RemoteStartTransaction")).payload == {
                "id_tag": "TOKEN-2"
            }
            # The escrow passes transaction ids on as the text it got; 1.6 gets its integer.
            stop = command("CP-1", "RemoteStopTransaction", {"transactionId": "42"})
            assert (await result_of(bus, issue(bus, stop)))["status"] == "accepted"
            assert (await cp.wait_for_command("RemoteStopTransaction")).payload == {
                "transaction_id": 42
            }
            bad = command("CP-1", "RequestStopTransaction", {"transactionId": "tx-9"})
            refused = await result_of(bus, issue(bus, bad))
            assert refused["status"] == "error" and "integers" in refused["error"]
            await cp.close()

    asyncio.run(scenario())
