"""OCPP 2.0.1 end to end: a simulated charging station against the gateway."""

from __future__ import annotations

import asyncio
from typing import Any

from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.envelope import make_envelope
from chargenet.core.events import SessionCancelled
from chargenet.core.ocpp_sim import ChargePoint201
from tests.gateway.conftest import endpoint, escrow_opened, events_of, eventually, running_gateway

SIGNED = {
    "signedMeterData": 'OCMF|{"FV":"1.0","RD":[{"RV":2.5,"RU":"kWh"}]}|{"SD":"30440220\\u00e9"}',
    "signingMethod": "ECDSA-secp256r1-SHA256",
    "encodingMethod": "OCMF",
    "publicKey": "3059301306072a8648ce3d0201",
}


def test_boot_heartbeat_status_meter_values_and_data_transfer(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            station = await ChargePoint201.connect(endpoint(gateway), "CP-1")
            boot = await station.boot()
            assert boot.status == "Accepted" and boot.interval == 300
            assert (await station.heartbeat()).current_time.endswith("Z")
            await station.status(1, 1, "Occupied")
            await station.meter_values(1, 1500)
            assert await station.data_transfer("com.example") == "UnknownVendorId"
            await station.close()
            booted = await eventually(
                lambda: events_of(bus, "charge-points", "chargenet.charge_point.booted.v1")
            )
            assert booted[0].data["ocpp_version"] == "2.0.1"
            status = events_of(bus, "charge-points", "chargenet.charge_point.status_changed.v1")
            assert status[0].data["evse_id"] == 1 and status[0].data["status"] == "Occupied"

    asyncio.run(scenario())


def test_transaction_events_need_a_lock_and_keep_signed_values(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus, ("CP-1", "CP-2")) as gateway:
            station = await ChargePoint201.connect(endpoint(gateway), "CP-1")
            await station.boot()
            assert await station.authorize("NOBODY") == "Unknown"
            assert (await station.start_transaction("NOBODY"))[1] == "Unknown"
            bus.publish("sessions", escrow_opened("CP-2", "TOKEN-ELSEWHERE"))
            opened = escrow_opened("CP-1", "TOKEN-1")
            bus.publish("sessions", opened)
            await eventually(lambda: len(gateway.authz) == 2)
            assert await station.authorize("TOKEN-ELSEWHERE") == "NotAtThisLocation"
            assert await station.authorize("TOKEN-1") == "Accepted"
            transaction, status = await station.start_transaction("TOKEN-1", energy_wh=100)
            assert status == "Accepted"
            # The same lock cannot back a second transaction.
            assert (await station.start_transaction("TOKEN-1"))[1] == "ConcurrentTx"
            await station.transaction_event(
                "Updated", transaction, trigger="MeterValuePeriodic", energy_wh=900, signed=SIGNED
            )
            await station.stop_transaction(transaction, 1700, signed=SIGNED)
            await station.close()
            started = await eventually(
                lambda: events_of(bus, "sessions", "chargenet.session.started.v1")
            )
            assert started[0].subject == opened.subject
            assert started[0].data["transaction_id"] == transaction
            assert started[0].data["meter_start_wh"] == 100
            meter = events_of(bus, "sessions", "chargenet.session.meter.v1")
            # The Started event's own reading counts as the first sample.
            assert [e.data["energy_wh"] for e in meter] == [100, 900]
            assert meter[1].data["signed_data"] == SIGNED["signedMeterData"]
            stopped = await eventually(
                lambda: events_of(bus, "sessions", "chargenet.session.stopped.v1")
            )
            assert stopped[0].data["meter_stop_wh"] == 1700
            assert stopped[0].data["signed_data"] == [SIGNED["signedMeterData"]]

    asyncio.run(scenario())


def test_the_evse_is_the_connector_a_lock_names(bus: InMemoryBus) -> None:
    """2.0.1 numbers connectors within each EVSE (almost always 1); chargenet's connector is the
    EVSE, as commands map it (translate.py)."""

    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            opened = escrow_opened("CP-1", "TOKEN-2", connector_id=2)
            bus.publish("sessions", opened)
            station = await ChargePoint201.connect(endpoint(gateway), "CP-1")
            await station.boot()
            await eventually(lambda: len(gateway.authz) == 1)
            elsewhere = await station.transaction_event(
                "Started", "tx-evse-1", trigger="Authorized", id_token="TOKEN-2", evse_id=1
            )
            assert elsewhere.id_token_info["status"] == "NotAtThisLocation"
            here = await station.transaction_event(
                "Started",
                "tx-evse-2",
                trigger="Authorized",
                id_token="TOKEN-2",
                energy_wh=100,
                evse_id=2,
            )
            assert here.id_token_info["status"] == "Accepted"
            await station.close()
            started = await eventually(
                lambda: events_of(bus, "sessions", "chargenet.session.started.v1")
            )
            assert started[0].subject == opened.subject
            assert started[0].data["connector_id"] == 2

    asyncio.run(scenario())


def session_events(bus: InMemoryBus, session_id: str) -> list[tuple[str, int]]:
    """The session's started, meter and stopped events in bus order, with their reading."""
    field = {"started": "meter_start_wh", "meter": "energy_wh", "stopped": "meter_stop_wh"}
    found = []
    for event in bus.events("sessions"):
        kind = event.type.split(".")[2]
        if event.subject == session_id and kind in field:
            found.append((kind, event.data[field[kind]]))
    return found


def test_a_reading_before_the_token_is_the_meter_start(bus: InMemoryBus) -> None:
    """Plug-in first: the station starts the transaction at the cable with a register reading,
    the driver's token comes later in an Updated event without one."""

    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            opened = escrow_opened("CP-1", "TOKEN-1")
            bus.publish("sessions", opened)
            station = await ChargePoint201.connect(endpoint(gateway), "CP-1")
            await station.boot()
            await eventually(lambda: len(gateway.authz) == 1)
            plugged = await station.transaction_event(
                "Started", "tx-1", trigger="CablePluggedIn", energy_wh=51_000
            )
            assert plugged.id_token_info is None
            authorized = await station.transaction_event(
                "Updated", "tx-1", trigger="Authorized", id_token="TOKEN-1"
            )
            assert authorized.id_token_info["status"] == "Accepted"
            await station.transaction_event(
                "Updated", "tx-1", trigger="MeterValuePeriodic", energy_wh=53_000
            )
            await station.stop_transaction("tx-1", 55_000)
            await station.close()
            await eventually(lambda: len(session_events(bus, opened.subject)) == 3)
            assert session_events(bus, opened.subject) == [
                ("started", 51_000),
                ("meter", 53_000),
                ("stopped", 55_000),
            ]

    asyncio.run(scenario())


def test_without_a_reading_the_start_waits_for_the_first_one(bus: InMemoryBus) -> None:
    """A station that reports no reading with the token: the session starts at its first one
    (never at 0 Wh, which would price the register's whole life); one that never reports any
    has nothing to bill."""

    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            first, never = escrow_opened("CP-1", "TOKEN-1"), escrow_opened("CP-1", "TOKEN-2")
            bus.publish("sessions", first)
            bus.publish("sessions", never)
            station = await ChargePoint201.connect(endpoint(gateway), "CP-1")
            await station.boot()
            await eventually(lambda: len(gateway.authz) == 2)
            started = await station.transaction_event(
                "Started", "tx-late", trigger="Authorized", id_token="TOKEN-1"
            )
            assert started.id_token_info["status"] == "Accepted"
            await station.transaction_event(
                "Updated", "tx-late", trigger="MeterValuePeriodic", energy_wh=80_000
            )
            await station.stop_transaction("tx-late", 82_000)
            # Same again, but not one reading until the end.
            started = await station.transaction_event(
                "Started", "tx-none", trigger="Authorized", id_token="TOKEN-2"
            )
            assert started.id_token_info["status"] == "Accepted"
            await station.transaction_event("Ended", "tx-none", trigger="StopAuthorized")
            await station.close()
            await eventually(lambda: len(session_events(bus, first.subject)) == 3)
            assert session_events(bus, first.subject) == [
                ("started", 80_000),
                ("meter", 80_000),
                ("stopped", 82_000),
            ]
            assert session_events(bus, never.subject) == []

    asyncio.run(scenario())


def test_a_start_that_outwaited_its_lock_is_still_told_to_the_escrow(bus: InMemoryBus) -> None:
    """The escrow cancels a session whose start does not come before its deadline; the start
    that comes later (at the first reading) still reaches it, so that it stops the transaction
    nothing pays for."""

    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            opened = escrow_opened("CP-1", "TOKEN-1")
            bus.publish("sessions", opened)
            station = await ChargePoint201.connect(endpoint(gateway), "CP-1")
            await station.boot()
            await eventually(lambda: len(gateway.authz) == 1)
            await station.transaction_event(
                "Started", "tx-1", trigger="Authorized", id_token="TOKEN-1"
            )
            cancelled = SessionCancelled(session_id=opened.subject, reason="no start in time")
            bus.publish("sessions", make_envelope(cancelled, subject=opened.subject, source="t"))
            await eventually(lambda: len(gateway.authz) == 0)
            await station.transaction_event(
                "Updated", "tx-1", trigger="MeterValuePeriodic", energy_wh=80_000
            )
            await station.stop_transaction("tx-1", 82_000)
            await station.close()
            assert session_events(bus, opened.subject) == [("started", 80_000)]

    asyncio.run(scenario())


def test_a_closed_transactions_repeated_end_leaves_the_tokens_next_lock_alone(
    bus: InMemoryBus,
) -> None:
    """An Ended (or Updated) with the token, for a transaction whose session closed, is a repeat
    whose answer was lost: answered as the first time, nothing published. Decided again, it
    bound the same token's next lock at this charge point to the old transaction and ended it
    there; the driver's next start was refused."""

    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            first = escrow_opened("CP-1", "TOKEN-1")
            bus.publish("sessions", first)
            station = await ChargePoint201.connect(endpoint(gateway), "CP-1")
            await station.boot()
            await eventually(lambda: len(gateway.authz) == 1)
            transaction, _ = await station.start_transaction("TOKEN-1", energy_wh=100)

            def end() -> Any:
                return station.transaction_event(
                    "Ended",
                    transaction,
                    trigger="StopAuthorized",
                    id_token="TOKEN-1",
                    energy_wh=1700,
                    stopped_reason="Local",
                )

            ended = await end()
            assert ended.id_token_info["status"] == "Accepted"
            second = escrow_opened("CP-1", "TOKEN-1")
            bus.publish("sessions", second)
            await eventually(lambda: len(gateway.authz) == 1)
            published = len(bus.events("sessions"))

            assert (await end()).id_token_info == ended.id_token_info
            assert len(bus.events("sessions")) == published
            assert len(gateway.authz) == 1  # the second lock, not bound to anything
            late = await station.transaction_event(
                "Updated", transaction, trigger="Authorized", id_token="TOKEN-1", energy_wh=1700
            )
            assert late.id_token_info == ended.id_token_info
            assert len(bus.events("sessions")) == published
            assert gateway.authz.by_transaction("CP-1", transaction) is None

            again, status = await station.start_transaction("TOKEN-1", energy_wh=1700)
            assert status == "Accepted"
            await station.close()
            await eventually(
                lambda: session_events(bus, second.subject) == [("started", 1700), ("meter", 1700)]
            )
            assert session_events(bus, first.subject) == [
                ("started", 100),
                ("meter", 100),
                ("stopped", 1700),
            ]
            assert gateway.authz.by_transaction("CP-1", again).session_id == second.subject

    asyncio.run(scenario())
