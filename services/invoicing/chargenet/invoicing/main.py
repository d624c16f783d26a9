"""``chargenet-invoicing`` / ``chargenet run invoicing``: the invoicing service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from chargenet.core import logging as core_logging
from chargenet.core.bus import EventBus, create_bus
from chargenet.core.db import Database
from chargenet.core.db.migrations import upgrade_to_head
from chargenet.core.db.outbox import OutboxRelay
from chargenet.core.db.retention import Retention
from chargenet.core.http import ops_router, rest_app, serve
from chargenet.core.settings import ConfigurationError, exit_on_configuration_error, load_settings
from chargenet.invoicing.api import refused_router, router
from chargenet.invoicing.consumer import APPLIED_TYPES, SessionsConsumer
from chargenet.invoicing.events import CONSUMES, InvoiceIssued
from chargenet.invoicing.settings import InvoicingSettings
from chargenet.invoicing.suppliers import load_suppliers

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
log = logging.getLogger(__name__)


def migrate(db: Database) -> None:
    upgrade_to_head(db, MIGRATIONS)


def create_app(settings: InvoicingSettings, bus: EventBus, db: Database) -> FastAPI:
    """The REST app; its lifespan runs the sessions consumer and the outbox relay.

    Raises ConfigurationError when the suppliers file is not valid (naming each supplier).
    """
    suppliers = load_suppliers(settings.invoicing_suppliers_file)
    if not suppliers:
        log.warning(
            "no suppliers configured (CHARGENET_INVOICING_SUPPLIERS_FILE): every settlement "
            "is refused until its CPO has one"
        )
    consumer = SessionsConsumer(
        db,
        suppliers,
        settings.invoicing_meter_data_url,
        settings.invoicing_default_buyer_country,
    )
    relay = OutboxRelay(db, bus, retention=Retention.of(settings))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The bus applies the configured topic prefix itself.
        bus.ensure_topics([*CONSUMES, InvoiceIssued.topic])
        consumer.reissue()
        subscription = bus.subscribe(
            CONSUMES,
            settings.invoicing_consumer_group,
            consumer,
            batch_handler=consumer.batch,
            types=APPLIED_TYPES,
        )
        relay.start(settings.outbox_poll_seconds)
        try:
            yield
        finally:
            subscription.close()
            relay.stop()

    app = rest_app("chargenet invoicing", lifespan)
    app.state.db = db
    app.state.jwt_secret = settings.invoicing_jwt_secret.get_secret_value()
    app.state.consumer = consumer
    app.include_router(ops_router({"database": db.check}))
    app.include_router(router)
    app.include_router(refused_router)
    return app


def main() -> int:
    try:
        settings = load_settings(InvoicingSettings)
        core_logging.configure(
            settings.log_level, json_lines=settings.log_json, service="invoicing"
        )
        db = Database.from_settings(settings)
        migrate(db)
        bus = create_bus(settings)
        app = create_app(settings, bus, db)
    except ConfigurationError as error:
        exit_on_configuration_error(error)
        return 2
    try:
        serve(app, settings.http_host, settings.http_port)
    finally:
        bus.close()
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
