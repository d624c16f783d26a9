"""Opening a charge point's WebSocket the way real firmware does (subprotocol, Basic auth, TLS)."""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from enum import StrEnum

from websockets.asyncio.client import ClientConnection, connect


class Protocol(StrEnum):
    V16 = "ocpp1.6"
    V201 = "ocpp2.0.1"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how a simulated charge point connects."""

    url: str  # ws://host:port/ocpp  (the charge point id is appended)
    password: str | None = None
    ssl: ssl.SSLContext | None = None
    open_timeout: float = 10.0

    def for_charge_point(self, charge_point_id: str) -> str:
        return f"{self.url.rstrip('/')}/{charge_point_id}"


def basic_auth_header(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return f"Basic {token}"


async def open_socket(
    endpoint: Endpoint,
    charge_point_id: str,
    protocol: Protocol | list[str],
    *,
    max_size: int | None = 2**20,
) -> ClientConnection:
    """Connect; ``protocol`` may be a raw list of subprotocols to offer (tests of refusals)."""
    headers = {}
    if endpoint.password is not None:
        headers["Authorization"] = basic_auth_header(charge_point_id, endpoint.password)
    offered = [protocol.value] if isinstance(protocol, Protocol) else protocol
    return await connect(
        endpoint.for_charge_point(charge_point_id),
        subprotocols=offered,  # type: ignore[arg-type]
        additional_headers=headers,
        ssl=endpoint.ssl,
        compression=None,
        open_timeout=endpoint.open_timeout,
        max_size=max_size,
        ping_interval=None,
    )
