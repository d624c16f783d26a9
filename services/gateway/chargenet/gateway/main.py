"""``chargenet-gateway``: the OCPP endpoint plus the ops HTTP server (/healthz /readyz /metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from fastapi import FastAPI

from chargenet.core import logging as core_logging
from chargenet.core.bus import create_bus
from chargenet.core.http import http_server, ops_router
from chargenet.core.settings import (
    ConfigurationError,
    exit_on_configuration_error,
    fail,
    load_settings,
)
from chargenet.gateway.credentials import CredentialsError
from chargenet.gateway.server import Gateway
from chargenet.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


async def serve(settings: GatewaySettings) -> None:
    bus = create_bus(settings)
    try:
        gateway = Gateway(settings, bus)
    except CredentialsError as error:
        raise fail(str(error)) from None
    await gateway.start()
    app = FastAPI(title=f"chargenet gateway {settings.cpo_id}")
    app.include_router(ops_router({"websocket": gateway.ready}))
    ops = http_server(app, settings.http_host, settings.http_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ops_task = asyncio.create_task(ops.serve())
    await stop.wait()
    log.info("stopping")
    ops.should_exit = True
    await gateway.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await ops_task
    bus.close()


def main() -> None:
    try:
        settings = load_settings(GatewaySettings)
        core_logging.configure(
            settings.log_level, json_lines=settings.log_json, service=settings.service_name
        )
        asyncio.run(serve(settings))
    except ConfigurationError as error:
        exit_on_configuration_error(error)


if __name__ == "__main__":
    main()
