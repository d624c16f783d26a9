"""The gateway process: the WebSocket endpoint, the connection table and the bus subscriptions."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from websockets.asyncio.server import Server, ServerConnection, serve

from chargenet.core.bus import EventBus, Subscription
from chargenet.gateway.auth import (
    SUBPROTOCOLS,
    Admission,
    charge_point_id_from_path,
    select_subprotocol,
    server_ssl_context,
)
from chargenet.gateway.authz import APPLIED_TYPES, AuthorizationTable
from chargenet.gateway.commands import CommandRouter
from chargenet.gateway.connection import CLOSE_REPLACED, ChargePointConnection
from chargenet.gateway.context import GatewayContext
from chargenet.gateway.credentials import CredentialStore
from chargenet.gateway.events import (
    CHARGE_POINTS_TOPIC,
    RESULTS_TOPIC,
    SESSIONS_TOPIC,
    ChargePointDisconnected,
    ConnectionClaimed,
    ConnectionReleased,
    gateway_commands_topic,
)
from chargenet.gateway.inline_socket import InlineServerConnection
from chargenet.gateway.metrics import CONNECTED, DISCONNECTS, disconnect_reason
from chargenet.gateway.ocppj import OcppVersion
from chargenet.gateway.publisher import EventPublisher
from chargenet.gateway.schemas import SchemaRegistry
from chargenet.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


def load_credentials(settings: GatewaySettings) -> CredentialStore:
    if settings.charge_points_file is not None:
        return CredentialStore.from_file(settings.charge_points_file)
    assert settings.charge_points_json is not None
    return CredentialStore.from_json(settings.charge_points_json)


class Gateway:
    """One replica. ``await start()``, then charge points connect to ``port``; ``await stop()``."""

    def __init__(
        self, settings: GatewaySettings, bus: EventBus, credentials: CredentialStore | None = None
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.credentials = credentials or load_credentials(settings)
        self.source = f"chargenet/gateway/{settings.cpo_id}/{settings.replica_id}"
        self.publisher = EventPublisher(bus, self.source)
        self.authz = AuthorizationTable(serves=self.credentials.__contains__)
        self.ctx = GatewayContext(
            settings, self.publisher, self.authz, SchemaRegistry(settings.relaxed_schema_actions)
        )
        self.connections: dict[str, ChargePointConnection] = {}
        self.commands_topic = gateway_commands_topic(settings.cpo_id)
        self._admission = Admission(settings, self.credentials)
        self._server: Server | None = None
        self._router: CommandRouter | None = None
        self._subscriptions: list[Subscription] = []
        self.port = settings.ws_port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._router = CommandRouter(self.ctx, self.connections, loop)
        # Every topic it writes to as well: created on the first send, it would hold up the
        # event loop while the bus waits for the new topic to be served.
        self.bus.ensure_topics(
            [self.commands_topic, SESSIONS_TOPIC, RESULTS_TOPIC, CHARGE_POINTS_TOPIC]
        )
        cpo, replica = self.settings.cpo_id, self.settings.replica_id
        # The authorisation table lives in memory: each start rebuilds it from the whole topic,
        # hence a fresh group per incarnation.
        incarnation = uuid.uuid4().hex[:8]
        self._subscriptions.append(
            self.bus.subscribe(
                [SESSIONS_TOPIC],
                f"gateway-{cpo}-{replica}-sessions-{incarnation}",
                self.authz.apply,
                types=APPLIED_TYPES,
            )
        )
        # Commands: a group per replica so every replica sees every command. A new replica reads
        # from the beginning: starting "at the end" loses a command published between joining
        # and the first fetch (and again after every rebalance before a commit); the claims on
        # this topic rebuild who holds which socket, and long-expired commands are skipped.
        self._subscriptions.append(
            self.bus.subscribe(
                [self.commands_topic], f"gateway-{cpo}-{replica}", self._router.on_envelope
            )
        )
        # Serving starts once the consumers are assigned, before the table's replay caught up: a
        # transaction message it cannot place yet is refused, to be retried (UnknownTransaction).
        for subscription in self._subscriptions:
            subscription.wait_assigned()
        self._server = await serve(
            self._handle,
            self.settings.ws_host,
            self.settings.ws_port,
            subprotocols=[*SUBPROTOCOLS],  # type: ignore[list-item]
            select_subprotocol=select_subprotocol,  # type: ignore[arg-type]
            process_request=self._admission.process_request,
            ssl=server_ssl_context(self.settings),
            compression=None,  # permessage-deflate costs ~100 KB per socket
            max_size=self.settings.max_frame_bytes,
            max_queue=4,
            server_header=None,
            create_connection=InlineServerConnection,
        )
        sockets = self._server.sockets
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.ws_port
        log.info("gateway %s listening on port %d", self.source, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
        if self._router is not None:
            self._router.cancel_all()
        await asyncio.to_thread(self.publisher.close)

    def ready(self) -> None:
        """Readiness: raises unless the socket is being served."""
        if self._server is None or not self._server.is_serving():
            raise RuntimeError("the WebSocket server is not serving")

    async def _handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, InlineServerConnection) and ws.request is not None
        identity = charge_point_id_from_path(ws.request.path)
        assert identity is not None and ws.subprotocol is not None
        version = OcppVersion(ws.subprotocol)
        connection = ChargePointConnection(
            self.ctx, ws, identity, version, uuid.uuid4().hex, datetime.now(UTC)
        )
        older = self.connections.get(identity)
        self.connections[identity] = connection
        if older is not None:
            older.replaced = True
            await older.close(CLOSE_REPLACED, "replaced by a newer connection")
        self.publisher.publish(
            self.commands_topic,
            ConnectionClaimed(
                charge_point_id=identity,
                replica_id=self.settings.replica_id,
                connection_id=connection.connection_id,
                connected_at=connection.connected_at,
            ),
            identity,
        )
        gauge = CONNECTED.labels(version.value)
        gauge.inc()
        try:
            await connection.run()
        finally:
            gauge.dec()
            self._closed(connection)

    def _closed(self, connection: ChargePointConnection) -> None:
        identity = connection.charge_point_id
        if self.connections.get(identity) is connection:
            del self.connections[identity]
        if connection.replaced:
            # The charge point is still online through its newer socket: nothing to announce.
            log.info("%s: older socket closed: %s", identity, connection.close_reason)
            return
        self.publisher.publish(
            self.commands_topic,
            ConnectionReleased(
                charge_point_id=identity,
                replica_id=self.settings.replica_id,
                connection_id=connection.connection_id,
            ),
            identity,
        )
        self.ctx.emit(
            ChargePointDisconnected(
                cpo_id=self.settings.cpo_id,
                charge_point_id=identity,
                reason=connection.close_reason,
                # Extra fields (allowed by EventData) for operators.
                close_code=connection.ws.close_code,
                replica_id=self.settings.replica_id,
            ),
            identity,
        )
        DISCONNECTS.labels(disconnect_reason(connection.ws.close_code)).inc()
        log.info("%s disconnected: %s", identity, connection.close_reason)
