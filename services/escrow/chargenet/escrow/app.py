"""Assembling the escrow: chain reader, signer client, consumer, worker, outbox relay, ops app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from web3 import Web3

from chargenet.core.bus import EventBus, Subscription
from chargenet.core.chain import connect
from chargenet.core.db import Database
from chargenet.core.db.migrations import upgrade_to_head
from chargenet.core.db.outbox import OutboxRelay
from chargenet.core.db.retention import Retention
from chargenet.core.events import Topic
from chargenet.core.http import ops_router, rest_app
from chargenet.core.settings import fail
from chargenet.core.signer_client import SignerClient, signer_client
from chargenet.escrow.chain import ChainReader
from chargenet.escrow.core import EscrowCore
from chargenet.escrow.handlers import SessionHandlers
from chargenet.escrow.operations import Operations
from chargenet.escrow.settings import EscrowSettings
from chargenet.escrow.worker import Worker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
CONSUMES = (Topic.SESSIONS.value, Topic.GATEWAY_RESULTS.value)


def migrate(db: Database) -> None:
    upgrade_to_head(db, MIGRATIONS)


class EscrowService:
    """The running escrow. ``w3`` shares an in-process chain (the embedded default); ``signer``
    shares a client. Without them, ``chain_rpc_url`` and ``signer_url`` name the components."""

    def __init__(
        self,
        settings: EscrowSettings,
        db: Database,
        bus: EventBus,
        *,
        w3: Web3 | None = None,
        signer: SignerClient | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self.reader: ChainReader | None = None
        if settings.escrow_address:
            try:
                self.reader = ChainReader(
                    w3 or connect(settings.chain_rpc_url), settings.escrow_address
                )
            except Exception as error:
                raise fail(
                    f"CHARGENET_ESCROW_ADDRESS: no ChargingEscrow readable at "
                    f"{settings.escrow_address} on {settings.chain_rpc_url}: {error}"
                ) from None
        self._own_signer = signer is None
        self.signer = signer or signer_client(settings)
        self.relay = OutboxRelay(db, bus, retention=Retention.of(settings))
        self.core = EscrowCore(settings, db, on_commit=self.relay.notify)
        self.handlers = SessionHandlers(self.core, self.reader, bus)
        self.operations = Operations(self.core, self.signer)
        self.worker = (
            Worker(self.core, self.reader, self.operations) if self.reader is not None else None
        )
        self._subscription: Subscription | None = None

    def start(self) -> None:
        self.bus.ensure_topics(list(CONSUMES))
        self._subscription = self.bus.subscribe(
            CONSUMES,
            self.settings.escrow_consumer_group,
            self.handlers,
            batch_handler=self.handlers.handle_batch,
            types=self.handlers.types,
        )
        self.relay.start(self.settings.outbox_poll_seconds)
        if self.worker is not None:
            self.worker.start()
        else:
            log.warning("CHARGENET_ESCROW_ADDRESS is unset: every session request is rejected")

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        if self.worker is not None:
            self.worker.stop()
        self.relay.stop()
        if self._own_signer:
            self.signer.close()

    def ready(self) -> None:
        """Readiness: the database answers and the escrow contract is configured and readable."""
        self.db.check()
        if self.reader is None:
            raise RuntimeError("CHARGENET_ESCROW_ADDRESS is unset")
        self.reader.chain_time()


def create_app(service: EscrowService) -> FastAPI:
    """The ops app (/healthz /readyz /metrics); its lifespan runs the service."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = rest_app("chargenet escrow", lifespan)
    app.include_router(ops_router({"escrow": service.ready}))
    return app
