"""Transaction messages for a transaction the gateway cannot place (yet): right after a restart,
before its replay of ``sessions`` rebuilt the authorisation table, or on a replica that has not
seen the ``started`` event. A success would make the charge point drop them for good (the final
reading, the signed end record); a CALLERROR InternalError makes it retry them (OCPP 1.6 §4.10,
2.0.1 TransactionEvent), and they are recorded once the table knows the transaction."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest
from ocpp.exceptions import InternalError

from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.envelope import Envelope, make_envelope
from chargenet.core.events import SessionStarted
from chargenet.core.ocpp_sim import ChargePoint16, ChargePoint201
from chargenet.gateway.server import Gateway
from tests.gateway.conftest import endpoint, escrow_opened, events_of, eventually, running_gateway
from tests.gateway.test_ocpp16 import OCMF
from tests.gateway.test_ocpp201 import SIGNED

STOPPED = "chargenet.session.stopped.v1"


def started(session_id: str, transaction_id: str, meter_start_wh: int = 1_000) -> Envelope:
    """A ``started`` event as another replica publishes it."""
    data = SessionStarted(
        session_id=session_id,
        charge_point_id="CP-1",
        connector_id=1,
        transaction_id=transaction_id,
        meter_start_wh=meter_start_wh,
        started_at=datetime.now(UTC),
    )
    return make_envelope(data, subject=session_id, source="chargenet/gateway/cpo-test/replica-b")


async def catch_up(bus: InMemoryBus, gateway: Gateway, transaction_id: str) -> Envelope:
    """What the replay brings in late: the lock and the transaction's start."""
    opened = escrow_opened("CP-1", "TOKEN-1")
    bus.publish("sessions", opened)
    bus.publish("sessions", started(opened.subject, transaction_id))
    await eventually(lambda: gateway.authz.by_transaction("CP-1", transaction_id))
    return opened


def test_16_stop_and_meter_values_are_retried_until_the_transaction_is_known(
    bus: InMemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            cp = await ChargePoint16.connect(endpoint(gateway), "CP-1")
            await cp.boot()
            with pytest.raises(InternalError):
                await cp.meter_values(1, 4711, 2500)
            with pytest.raises(InternalError):
                await cp.stop_transaction(4711, 4200, signed=[OCMF])
            assert "transaction 4711" in caplog.text
            opened = await catch_up(bus, gateway, "4711")
            # The charge point's retries.
            await cp.meter_values(1, 4711, 2500)
            await cp.stop_transaction(4711, 4200, signed=[OCMF])
            # A repeat of a recorded stop, and 0 (a refused start's id), are answered, not retried.
            await cp.stop_transaction(4711, 4200)
            await cp.stop_transaction(0, 4200)
            await cp.meter_values(1, 0, 4300)
            await cp.close()
            meter = events_of(bus, "sessions", "chargenet.session.meter.v1")
            assert [(e.subject, e.data["energy_wh"]) for e in meter] == [(opened.subject, 2500)]
            stopped = events_of(bus, "sessions", STOPPED)
            assert [(e.subject, e.data["meter_stop_wh"]) for e in stopped] == [
                (opened.subject, 4200)
            ]
            assert stopped[0].data["signed_data"] == [OCMF]

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())


def test_16_a_stop_waits_for_a_started_event_still_on_its_way(bus: InMemoryBus) -> None:
    """The grace an id token gets for its escrow event (decide) holds for a transaction too."""

    async def scenario() -> None:
        async with running_gateway(bus, authorize_grace_seconds=5.0) as gateway:
            opened = escrow_opened("CP-1", "TOKEN-1")
            bus.publish("sessions", opened)
            cp = await ChargePoint16.connect(endpoint(gateway), "CP-1")
            await cp.boot()
            stop = asyncio.ensure_future(cp.stop_transaction(4711, 4200))
            await asyncio.sleep(0.3)
            assert not stop.done()
            bus.publish("sessions", started(opened.subject, "4711"))
            await asyncio.wait_for(stop, 5)
            await cp.close()
            stopped = events_of(bus, "sessions", STOPPED)
            assert [(e.subject, e.data["meter_stop_wh"]) for e in stopped] == [
                (opened.subject, 4200)
            ]

    asyncio.run(scenario())


def test_201_an_ended_transaction_is_retried_until_it_is_known(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            station = await ChargePoint201.connect(endpoint(gateway), "CP-1")
            await station.boot()
            # A cable plugged in and out without a token: nothing stood behind it, nothing to retry.
            await station.transaction_event(
                "Started", "tx-idle", trigger="CablePluggedIn", energy_wh=10
            )
            await station.transaction_event("Ended", "tx-idle", trigger="EVCommunicationLost")
            # Nor one whose token was refused.
            refused = await station.start_transaction("NOBODY", transaction_id="tx-refused")
            assert refused == ("tx-refused", "Unknown")
            await station.stop_transaction("tx-refused", 20)
            with pytest.raises(InternalError):
                await station.stop_transaction("tx-1", 82_000, signed=SIGNED)
            opened = await catch_up(bus, gateway, "tx-1")
            await station.stop_transaction("tx-1", 82_000, signed=SIGNED)
            await station.stop_transaction("tx-1", 82_000)  # a repeat is answered
            await station.close()
            stopped = events_of(bus, "sessions", STOPPED)
            assert [(e.subject, e.data["meter_stop_wh"]) for e in stopped] == [
                (opened.subject, 82_000)
            ]
            assert stopped[0].data["signed_data"] == [SIGNED["signedMeterData"]]

    asyncio.run(scenario())
