"""``chargenet-registry`` / ``chargenet run registry``: the station registry service.

One process runs the REST API (uvicorn), the chain indexer (a thread), the charge point status
consumer (the bus's consumer thread) and the outbox relay (a thread).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from web3 import Web3

from chargenet.core import logging as core_logging
from chargenet.core.bus import EventBus, create_bus
from chargenet.core.chain import connect
from chargenet.core.db import Database
from chargenet.core.db.migrations import upgrade_to_head
from chargenet.core.db.outbox import OutboxRelay
from chargenet.core.db.retention import Retention
from chargenet.core.events import Topic
from chargenet.core.http import ops_router, rest_app, serve
from chargenet.core.settings import (
    ConfigurationError,
    exit_on_configuration_error,
    fail,
    load_settings,
)
from chargenet.core.signer_client import SignerClient, signer_client
from chargenet.core.web.station_paths import StationPaths
from chargenet.registry.api import STATION_PREFIXES, router
from chargenet.registry.console import CONSOLE_STATION_PREFIXES, mount_console
from chargenet.registry.cpo import ChainWriter
from chargenet.registry.indexer import Indexer
from chargenet.registry.metrics import API_LATENCY
from chargenet.registry.rpc import ChainReader
from chargenet.registry.settings import RegistrySettings
from chargenet.registry.status import CONSUMES, HANDLED, StatusConsumer

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


#: The interpreter's thread switch interval in this process (Python's default is 5 ms).
SWITCH_INTERVAL_S = 0.001


def migrate(db: Database) -> None:
    upgrade_to_head(db, MIGRATIONS)


def tune_interpreter() -> None:
    """Let the indexer's reading thread keep up while its writing thread runs Python.

    The reader takes a large eth_getLogs answer off the socket in many small reads, each of
    which lets go of the GIL; while the writer runs Python, each read then waits for the
    writer's next switch (the "convoy effect" of CPython's GIL, bpo-7946), at most one switch
    interval. At the default 5 ms that wait, not the node, sets the read speed during catch-up.
    (The garbage collector's settings, which a catch-up also needs, are every service's:
    ``chargenet.core.http.settle_heap``.)
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def build_indexer(settings: RegistrySettings, db: Database, w3: Web3) -> Indexer:
    return Indexer(
        db,
        ChainReader(w3),
        registry_address=settings.registry_address,
        escrow_address=settings.registry_escrow_address,
        start_block=settings.registry_start_block,
        confirmations=settings.registry_confirmations,
        batch_blocks=settings.registry_batch_blocks,
        source=settings.service_name,
    )


def create_app(
    settings: RegistrySettings,
    bus: EventBus,
    db: Database,
    *,
    w3: Web3 | None = None,
    signer: SignerClient | None = None,
    run_indexer: bool = True,
) -> FastAPI:
    """The REST app; its lifespan runs the indexer, the status consumer and the outbox relay.

    ``w3`` None: no indexer (an API-only replica). ``signer`` None: CPO changes answer 409.
    """
    consumer = StatusConsumer(db)
    relay = OutboxRelay(db, bus, retention=Retention.of(settings))
    indexer = build_indexer(settings, db, w3) if w3 is not None and run_indexer else None
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        bus.ensure_topics([*CONSUMES, Topic.STATIONS.value])
        subscription = bus.subscribe(
            CONSUMES,
            settings.registry_consumer_group,
            consumer,
            batch_handler=consumer.batch,
            types=HANDLED,
        )
        relay.start(settings.outbox_poll_seconds)
        thread = None
        if indexer is not None:
            thread = threading.Thread(
                target=indexer.run,
                args=(stop, settings.registry_poll_seconds),
                name="registry-indexer",
                daemon=True,
            )
            thread.start()
        try:
            yield
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=30)
            subscription.close()
            relay.stop()
            await app.state.console.aclose()

    app = rest_app("chargenet registry", lifespan)
    app.state.db = db
    app.state.jwt_secret = settings.registry_jwt_secret.get_secret_value()
    app.state.writer = (
        ChainWriter(signer, settings.cpo_keys(), settings.registry_signer_contract)
        if signer is not None
        else None
    )
    app.state.consumer = consumer
    app.state.indexer = indexer
    app.include_router(ops_router({"database": db.check}))
    app.include_router(router)
    # The CPO console (issue 11): pages under /console; see chargenet.registry.console.
    mount_console(app)
    app.add_middleware(StationPaths, prefixes=(*STATION_PREFIXES, *CONSOLE_STATION_PREFIXES))

    @app.middleware("http")
    async def _latency(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        API_LATENCY.labels(
            route=_route_template(request),
            method=request.method,
            status=f"{response.status_code // 100}xx",
        ).observe(time.perf_counter() - started)
        return response

    return app


def _route_template(request: Request) -> str:
    # The template (/v1/stations/{station_id}), never the raw path: ids would explode the series.
    # path_format: without a parameter's converter (":path"), so the series keep their names.
    route = request.scope.get("route")
    return str(getattr(route, "path_format", "unmatched"))


def main() -> int:
    try:
        settings = load_settings(RegistrySettings)
        core_logging.configure(settings.log_level, json_lines=settings.log_json, service="registry")
        if not settings.registry_address:
            raise fail("CHARGENET_REGISTRY_ADDRESS: the StationRegistry address is required")
        try:
            w3 = connect(settings.chain_rpc_url)
        except (ConnectionError, ValueError) as error:
            raise fail(f"CHARGENET_CHAIN_RPC_URL: {error}") from None
        db = Database.from_settings(settings)
        migrate(db)
        bus = create_bus(settings)
        signer = signer_client(settings)
        app = create_app(settings, bus, db, w3=w3, signer=signer)
    except ConfigurationError as error:
        exit_on_configuration_error(error)
        return 2
    tune_interpreter()
    try:
        serve(app, settings.http_host, settings.http_port)
    finally:
        signer.close()
        bus.close()
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
