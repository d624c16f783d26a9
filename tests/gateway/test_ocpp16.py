"""OCPP 1.6J end to end: a simulated charge point (the ``ocpp`` library) against the gateway."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
from ocpp.v16 import call

from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.envelope import Envelope
from chargenet.core.ocpp_sim import ChargePoint16
from chargenet.gateway.handlers16 import transaction_id_for
from chargenet.gateway.metrics import UNREAD_SIGNED_READINGS
from chargenet.gateway.server import Gateway
from tests.gateway.conftest import endpoint, escrow_opened, events_of, eventually, running_gateway

# An OCMF record as a meter would sign it; the gateway must carry it byte for byte.
OCMF = (
    'OCMF|{"FV":"1.0","GI":"SIM","GS":"0001","PG":"T1",'
    '"RD":[{"TM":"2024-05-01T10:00:00,000+0000 S","TX":"B","RV":1234.5,'
    '"RI":"1-b:1.8.0","RU":"kWh","ST":"G"}]}|'
    '{"SA":"ECDSA-secp256r1-SHA256","SD":"3045022100c1\\u00e9"}'
)


def test_boot_heartbeat_status_and_data_transfer(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            cp = await ChargePoint16.connect(endpoint(gateway), "CP-1")
            boot = await cp.boot()
            assert boot.status == "Accepted" and boot.interval == 300
            assert (await cp.heartbeat()).current_time.endswith("Z")
            await cp.status(1, "Available")
            assert await cp.data_transfer("com.example") == "UnknownVendorId"
            await cp.close()
            booted = await eventually(
                lambda: events_of(bus, "charge-points", "chargenet.charge_point.booted.v1")
            )
            assert booted[0].subject == "CP-1"
            assert booted[0].data["ocpp_version"] == "1.6"
            assert booted[0].data["vendor"] == "chargenet-sim"
            status = events_of(bus, "charge-points", "chargenet.charge_point.status_changed.v1")
            assert [(e.data["connector_id"], e.data["status"]) for e in status] == [
                (1, "Available")
            ]
            gone = await eventually(
                lambda: events_of(bus, "charge-points", "chargenet.charge_point.disconnected.v1")
            )
            assert gone[0].subject == "CP-1"

    asyncio.run(scenario())


def test_no_energy_without_a_lock(bus: InMemoryBus) -> None:
    """Tokens no open escrow stands behind are refused; the one that has one starts."""

    async def scenario() -> None:
        async with running_gateway(bus, ("CP-1", "CP-2")) as gateway:
            bus.publish("sessions", escrow_opened("CP-2", "TOKEN-ELSEWHERE"))
            expired = escrow_opened("CP-1", "TOKEN-OLD", expires_in=-timedelta(minutes=1))
            bus.publish("sessions", expired)
            cp = await ChargePoint16.connect(endpoint(gateway), "CP-1")
            await cp.boot()
            assert await cp.authorize("NOBODY") == "Invalid"
            assert await cp.start_transaction(1, "NOBODY") == (0, "Invalid")
            await eventually(lambda: len(gateway.authz) == 2)
            assert await cp.authorize("TOKEN-ELSEWHERE") == "Invalid"
            assert (await cp.start_transaction(1, "TOKEN-OLD"))[1] == "Expired"

            opened = escrow_opened("CP-1", "TOKEN-1")
            bus.publish("sessions", opened)
            await eventually(lambda: len(gateway.authz) == 3)
            assert await cp.authorize("TOKEN-1") == "Accepted"
            transaction, status = await cp.start_transaction(1, "TOKEN-1", meter_start=1000)
            assert status == "Accepted"
            assert transaction == transaction_id_for(opened.subject)
            # The lock is for connector 1 only; a retried start gets the same transaction back.
            assert (await cp.start_transaction(2, "TOKEN-1"))[1] == "Invalid"
            assert await cp.start_transaction(1, "TOKEN-1") == (transaction, "Accepted")
            await cp.close()
            started = await eventually(
                lambda: events_of(bus, "sessions", "chargenet.session.started.v1")
            )
            assert len(started) == 1
            assert started[0].subject == opened.subject
            assert started[0].data["transaction_id"] == str(transaction)
            assert started[0].data["meter_start_wh"] == 1000

    asyncio.run(scenario())


async def charging(bus: InMemoryBus, gateway: Gateway) -> tuple[Envelope, ChargePoint16, int]:
    """CP-1 connected and charging for TOKEN-1's session (meter start 1000 Wh): the session's
    opening event, the charge point and its transaction."""
    opened = escrow_opened("CP-1", "TOKEN-1")
    bus.publish("sessions", opened)
    cp = await ChargePoint16.connect(endpoint(gateway), "CP-1")
    await cp.boot()
    await eventually(lambda: len(gateway.authz) == 1)
    transaction, _ = await cp.start_transaction(1, "TOKEN-1", meter_start=1000)
    return opened, cp, transaction


async def meter_events(
    bus: InMemoryBus, cp: ChargePoint16, transaction: int, queued: list[dict[str, Any]], count: int
) -> list[Envelope]:
    """Send ``queued`` in one MeterValues, close, and wait for ``count`` meter reading events."""
    await cp.call(
        call.MeterValues(connector_id=1, transaction_id=transaction, meter_value=queued),
        suppress=False,
    )
    await cp.close()
    return await eventually(
        lambda: (
            len(found := events_of(bus, "sessions", "chargenet.session.meter.v1")) == count
            and found
        )
    )


def test_readings_sent_together_are_a_reading_each_and_a_moments_entries_one(
    bus: InMemoryBus,
) -> None:
    """A charger back from offline sends its queued readings in one MeterValues: each is a
    reading of its own (all but the last were lost). Entries of one timestamp are one reading,
    as chargers that send the signed value in an entry of its own need."""

    def energy(wh: int) -> dict[str, str]:
        return {"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}

    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            _opened, cp, transaction = await charging(bus, gateway)
            signed = {"value": OCMF, "format": "SignedData", "context": "Sample.Periodic"}
            queued = [
                {"timestamp": "2026-11-30T10:00:00Z", "sampledValue": [energy(1500)]},
                {"timestamp": "2026-11-30T10:15:00Z", "sampledValue": [energy(2600)]},
                {"timestamp": "2026-11-30T10:15:00Z", "sampledValue": [signed]},
            ]
            meter = await meter_events(bus, cp, transaction, queued, 2)
            assert [(m.data["energy_wh"], m.data["signed_data"]) for m in meter] == [
                (1500, None),
                (2600, OCMF),
            ]
            assert [m.data["measured_at"][11:16] for m in meter] == ["10:00", "10:15"]

    asyncio.run(scenario())


def ocmf_record(*readings: str) -> str:
    """A signed OCMF record with these RD entries (JSON objects as a meter writes them)."""
    payload = '{"FV":"1.0","GI":"SIM","PG":"T1","RD":[' + ",".join(readings) + "]}"
    return f'OCMF|{payload}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"3045022100c1"}}'


def signed_alone(moment: str, value: str) -> dict[str, Any]:
    """A 1.6 meter value whose only sampled value is a signed one (no plain register reading)."""
    return {
        "timestamp": moment,
        "sampledValue": [{"value": value, "format": "SignedData", "context": "Transaction.Begin"}],
    }


def test_a_signed_value_sent_alone_is_a_reading_of_the_energy_it_signs(bus: InMemoryBus) -> None:
    """Chargers that send an OCMF record without a plain register reading (the begin record on
    its own): the reading is the record's own energy, its import register (1.8.0) or else its
    first reading in kWh or Wh, and the record is kept byte-exact; it was dropped."""
    begin = ocmf_record(
        '{"TM":"2026-11-30T10:00:00,000+0000 S","TX":"B","RV":1.0005,"RI":"1-b:1.8.0","RU":"kWh"}'
    )
    both_ways = ocmf_record(
        '{"TM":"2026-11-30T10:15:00,000+0000 S","TX":"T","RV":7.5,"RI":"1-b:2.8.0","RU":"kWh"}',
        '{"TM":"2026-11-30T10:15:00,000+0000 S","TX":"T","RV":2600,"RI":"01-00:01.08.00.FF",'
        '"RU":"Wh"}',
    )
    no_register_code = ocmf_record(
        '{"TM":"2026-11-30T10:30:00,000+0000 S","TX":"T","RV":3.2,"RU":"kWh"}'
    )

    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            opened, cp, transaction = await charging(bus, gateway)
            queued = [
                signed_alone("2026-11-30T10:00:00Z", begin),
                signed_alone("2026-11-30T10:15:00Z", both_ways),
                signed_alone("2026-11-30T10:30:00Z", no_register_code),
            ]
            meter = await meter_events(bus, cp, transaction, queued, 3)
            assert [(m.data["energy_wh"], m.data["signed_data"]) for m in meter] == [
                (1000, begin),  # 1000.5 Wh: whole Wh, half to even
                (2600, both_ways),
                (3200, no_register_code),
            ]
            assert {m.subject for m in meter} == {opened.subject}

    asyncio.run(scenario())


def test_a_signed_value_with_no_energy_of_its_own_is_left_out_logged_and_counted(
    bus: InMemoryBus, caplog: pytest.LogCaptureFixture
) -> None:
    """A signed value alone that is not OCMF, or signs no energy, still cannot be billed
    against; it may be the session's signed begin, so leaving it out is not silent. One the JSON
    parser refuses (a number too long) is the same, not a failed MeterValues."""
    not_energy = ocmf_record(
        '{"TM":"2026-11-30T10:05:00,000+0000 S","TX":"T","RV":12,"RI":"1-b:3.8.0","RU":"varh"}'
    )
    too_long = ocmf_record(
        '{"TM":"2026-11-30T10:10:00,000+0000 S","TX":"T","RV":1' + "0" * 5000 + ',"RU":"Wh"}'
    )

    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            _opened, cp, transaction = await charging(bus, gateway)
            before = UNREAD_SIGNED_READINGS._value.get()
            plain = {"value": "2600", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
            queued = [
                signed_alone("2026-11-30T10:00:00Z", "EDL40|not-ocmf"),
                signed_alone("2026-11-30T10:05:00Z", not_energy),
                signed_alone("2026-11-30T10:10:00Z", too_long),
                {"timestamp": "2026-11-30T10:15:00Z", "sampledValue": [plain]},
            ]
            meter = await meter_events(bus, cp, transaction, queued, 1)
            assert [m.data["energy_wh"] for m in meter] == [2600]
            assert UNREAD_SIGNED_READINGS._value.get() == before + 3

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    left_out = [r.getMessage() for r in caplog.records if "has no energy" in r.getMessage()]
    assert len(left_out) == 3
    assert "starts with 'OCMF|'" in left_out[0]
    assert "no reading in kWh or Wh" in left_out[1]
    assert "Exceeds the limit" in left_out[2]


def test_transaction_with_signed_meter_values_kept_byte_exact(bus: InMemoryBus) -> None:
    async def scenario() -> None:
        async with running_gateway(bus) as gateway:
            opened, cp, transaction = await charging(bus, gateway)
            await cp.meter_values(1, transaction, 2500, power_w=11000, signed=OCMF)
            await cp.stop_transaction(transaction, 4200, signed=[OCMF, OCMF + "2"])
            # The lock is used up: the token cannot start again.
            assert (await cp.start_transaction(1, "TOKEN-1"))[1] == "Invalid"
            await cp.close()
            meter = await eventually(
                lambda: events_of(bus, "sessions", "chargenet.session.meter.v1")
            )
            assert meter[0].subject == opened.subject
            assert meter[0].data["energy_wh"] == 2500
            assert meter[0].data["power_w"] == 11000
            assert meter[0].data["signed_data"] == OCMF
            stopped = await eventually(
                lambda: events_of(bus, "sessions", "chargenet.session.stopped.v1")
            )
            assert stopped[0].data["meter_stop_wh"] == 4200
            assert stopped[0].data["signed_data"] == [OCMF, OCMF + "2"]
            assert stopped[0].data["transaction_id"] == str(transaction)

    asyncio.run(scenario())
