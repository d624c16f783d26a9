"""Two gateway replicas behind the same real Kafka: a command for a charge point held by replica B,
issued from a third party, is executed there and its result delivered."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from chargenet.core.bus.kafka import KafkaBus
from chargenet.core.envelope import Envelope
from chargenet.core.events import gateway_commands_topic
from chargenet.core.ocpp_sim import ChargePoint16
from tests.gateway.conftest import CPO, endpoint, escrow_opened, eventually, running_gateway
from tests.gateway.test_commands import command

pytestmark = pytest.mark.kafka


def test_command_reaches_replica_b_over_kafka(kafka_bootstrap: str, topic_prefix: str) -> None:
    def bus() -> KafkaBus:
        return KafkaBus(kafka_bootstrap, topic_prefix=topic_prefix, partitions=4)

    replica_a, replica_b, operator = bus(), bus(), bus()
    operator.ensure_topics(
        [gateway_commands_topic(CPO), "gateway-results", "sessions", "charge-points"]
    )
    results: list[Envelope] = []
    lock = threading.Lock()

    def collect(envelope: Envelope) -> None:
        with lock:
            results.append(envelope)

    listener = operator.subscribe(["gateway-results"], "test-operator", collect)
    listener.wait_assigned()

    async def scenario() -> None:
        async with (
            running_gateway(replica_a, replica_id="replica-a") as a,
            running_gateway(replica_b, replica_id="replica-b") as b,
        ):
            opened = escrow_opened("CP-1", "TOKEN-1")
            operator.publish("sessions", opened)
            operator.flush()
            cp = await ChargePoint16.connect(endpoint(b), "CP-1", auto_transactions=True)
            await cp.boot()
            # Both replicas learn the lock from Kafka.
            await eventually(lambda: len(a.authz) == 1 and len(b.authz) == 1, within=60)
            issued = command("CP-1", "RemoteStartTransaction", {"idTag": "TOKEN-1"}, 20)
            operator.publish(gateway_commands_topic(CPO), issued)
            operator.flush()

            def answered() -> list[dict[str, Any]]:
                with lock:
                    # Results are keyed by command id; the command itself by charge point id.
                    return [e.data for e in results if e.subject == issued.data["command_id"]]

            found = await eventually(answered, within=60)
            assert len(found) == 1
            assert found[0]["status"] == "accepted" and found[0]["replica_id"] == "replica-b"
            # The charge point then started the transaction the escrow lock stands behind.
            transaction, token = await asyncio.wait_for(cp.started.get(), 10)
            assert token == "TOKEN-1" and transaction > 0
            await cp.close()

    try:
        asyncio.run(scenario())
    finally:
        listener.close()
        for each in (replica_a, replica_b, operator):
            each.close()
