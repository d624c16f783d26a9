"""The CPO console: pages under ``/console`` on the registry service.

It lives in the registry because the registry owns what a CPO looks at most (its stations, their
live connector status, the sessions open on chain at them) and the CPO API the station forms
submit to; revenue and invoices come from invoicing's REST, with the CPO's own token.
"""

from __future__ import annotations

from typing import Self

import httpx
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import model_validator

from chargenet.core.settings import CoreSettings, load_settings
from chargenet.core.web import mount_shared_static
from chargenet.registry.console.routes import CONSOLE_STATION_PREFIXES, HERE, Console, router

__all__ = ["CONSOLE_STATION_PREFIXES", "ConsoleSettings", "mount_console"]


class ConsoleSettings(CoreSettings):
    """``CHARGENET_CONSOLE_*``; the core fields are the registry's own."""

    #: The invoicing service's base URL; empty: no revenue or invoices in the console.
    console_invoicing_url: str = ""
    console_secure_cookies: bool = False
    console_timeout_seconds: float = 5.0

    @model_validator(mode="after")
    def _check(self) -> Self:
        url = self.console_invoicing_url
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"console_invoicing_url: {url!r} is not an http(s) URL")
        return self


def mount_console(app: FastAPI, invoicing: httpx.AsyncClient | None = None) -> None:
    """Mount the console; ``invoicing`` None reads ``CHARGENET_CONSOLE_*``."""
    settings = load_settings(ConsoleSettings)
    if invoicing is None and settings.console_invoicing_url:
        invoicing = httpx.AsyncClient(
            base_url=settings.console_invoicing_url,
            timeout=httpx.Timeout(settings.console_timeout_seconds),
        )
    app.state.console = Console(app, invoicing, settings.console_secure_cookies)
    mount_shared_static(app, "/console")
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)

    @app.get("/console", include_in_schema=False)
    def _console_root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)
