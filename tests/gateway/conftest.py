"""Gateway test helpers: a gateway on a free port over a given bus, and escrow events for it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chargenet.core.bus import EventBus
from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.envelope import Envelope, make_envelope
from chargenet.core.events import EscrowOpened
from chargenet.core.ocpp_sim import Endpoint
from chargenet.gateway.credentials import CredentialStore, hash_password
from chargenet.gateway.server import Gateway
from chargenet.gateway.settings import GatewaySettings

PASSWORD = "sim-password-0123456789"
CPO = "cpo-test"
_HASH = hash_password(PASSWORD)


def credentials_json(*charge_points: str, password_hash: str | None = _HASH) -> str:
    return json.dumps(
        {"charge_points": [{"id": cp, "password_hash": password_hash} for cp in charge_points]}
    )


def make_settings(charge_points: tuple[str, ...], **overrides: Any) -> GatewaySettings:
    fields: dict[str, Any] = {
        "cpo_id": CPO,
        "replica_id": "replica-a",
        "ws_port": 0,
        "security_profile": 1,
        "charge_points_json": credentials_json(*charge_points),
        "authorize_grace_seconds": 0.2,
        "log_json": False,
    }
    fields.update(overrides)
    return GatewaySettings(**fields)


@asynccontextmanager
async def running_gateway(
    bus: EventBus, charge_points: tuple[str, ...] = ("CP-1",), **overrides: Any
) -> AsyncIterator[Gateway]:
    settings = make_settings(charge_points, **overrides)
    gateway = Gateway(settings, bus, CredentialStore.from_json(settings.charge_points_json or ""))
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


def endpoint(gateway: Gateway, password: str | None = PASSWORD, **options: Any) -> Endpoint:
    scheme = "wss" if options.get("ssl") else "ws"
    return Endpoint(f"{scheme}://127.0.0.1:{gateway.port}/ocpp", password=password, **options)


def escrow_opened(
    charge_point_id: str,
    id_token: str,
    *,
    connector_id: int = 1,
    expires_in: timedelta = timedelta(hours=1),
    session_id: str | None = None,
) -> Envelope:
    session = session_id or f"s-{uuid.uuid4().hex[:12]}"
    data = EscrowOpened(
        session_id=session,
        cpo_id=CPO,
        station_id="station-1",
        charge_point_id=charge_point_id,
        connector_id=connector_id,
        id_token=id_token,
        max_amount=50_000_000,
        expires_at=datetime.now(UTC) + expires_in,
        tx_hash="0x" + "ab" * 32,
    )
    return make_envelope(data, subject=session, source="tests/escrow")


async def eventually(check: Callable[[], Any], within: float = 5.0) -> Any:
    """Poll ``check`` until it returns something truthy (events cross a bus thread)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def events_of(bus: InMemoryBus, topic: str, event_type: str) -> list[Envelope]:
    return [e for e in bus.events(topic) if e.type == event_type]


@pytest.fixture
def bus() -> InMemoryBus:
    return InMemoryBus(partitions=4)
