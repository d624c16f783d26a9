"""The driver app: server-rendered pages under ``/app`` on the wallet service.

Mounted by the wallet's ``create_app`` (``mount_driver_app``); the pages use the wallet's own
REST API in process, the registry's for stations and invoicing's for invoices. Static assets
(CSS, the script, Leaflet vendored from npm by ``web/``) ship in ``static/``: nothing loads from
a CDN.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from chargenet.core.web import mount_shared_static
from chargenet.core.web.station_paths import StationPaths
from chargenet.wallet.web.backend import WalletApi
from chargenet.wallet.web.config import DriverAppConfig, DriverAppSettings, Tiles
from chargenet.wallet.web.routes import HERE, STATION_PREFIXES, DriverApp, router

__all__ = ["DriverAppConfig", "DriverAppSettings", "Tiles", "mount_driver_app"]


def mount_driver_app(app: FastAPI, config: DriverAppConfig, currency: str) -> None:
    app.state.driver_app = DriverApp(config, WalletApi(app), currency)
    mount_shared_static(app, "/app")
    app.mount("/app/static", StaticFiles(directory=HERE / "static"), name="driver-static")
    app.include_router(router)
    app.add_middleware(StationPaths, prefixes=STATION_PREFIXES)

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse("/app/", status_code=307)
