"""What the driver app needs besides the wallet itself (``CHARGENET_WEB_*``).

The registry answers station search and detail, invoicing the invoices; both are reached over
their REST APIs (no service reads another's tables). A tile server is optional: without one the
map is drawn offline as an SVG.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Self

import httpx
from pydantic import model_validator

from chargenet.core.settings import CoreSettings, load_settings
from chargenet.wallet.settings import WalletSettings

_TILE = re.compile(r"^https?://[^\s]+$")


class DriverAppSettings(CoreSettings):
    """``CHARGENET_WEB_*``; the core fields are the wallet's own."""

    #: The invoicing service's base URL; empty: history shows no invoices.
    web_invoicing_url: str = ""
    #: The registry's base URL; empty: the wallet's own ``CHARGENET_WALLET_REGISTRY_URL``.
    web_registry_url: str = ""
    #: An XYZ tile URL template (``https://tiles.example/{z}/{x}/{y}.png``); empty: offline map.
    web_tile_url: str = ""
    #: Shown on the map as the tiles' licence asks (e.g. "© OpenStreetMap contributors").
    web_tile_attribution: str = ""
    #: Cookies only over HTTPS; on whenever the app is served over TLS.
    web_secure_cookies: bool = False
    web_timeout_seconds: float = 5.0

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.web_tile_url and not (
            _TILE.match(self.web_tile_url)
            and all(p in self.web_tile_url for p in ("{z}", "{x}", "{y}"))
        ):
            raise ValueError(
                "web_tile_url: an http(s) URL template with {z}, {x} and {y}, or empty for the "
                "offline map"
            )
        for name in ("web_invoicing_url", "web_registry_url"):
            value = getattr(self, name)
            if value and not value.startswith(("http://", "https://")):
                raise ValueError(f"{name}: {value!r} is not an http(s) URL")
        return self


@dataclass(frozen=True)
class Tiles:
    url: str
    attribution: str


@dataclass
class DriverAppConfig:
    """The driver app's connections; tests hand in clients on the in-process services."""

    registry: httpx.AsyncClient
    invoicing: httpx.AsyncClient | None = None
    tiles: Tiles | None = None
    secure_cookies: bool = False

    @classmethod
    def from_env(cls, wallet: WalletSettings) -> DriverAppConfig:
        web = load_settings(DriverAppSettings)  # a bad value exits naming the variable
        timeout = httpx.Timeout(web.web_timeout_seconds)
        return cls(
            registry=httpx.AsyncClient(
                base_url=web.web_registry_url or wallet.wallet_registry_url, timeout=timeout
            ),
            invoicing=httpx.AsyncClient(base_url=web.web_invoicing_url, timeout=timeout)
            if web.web_invoicing_url
            else None,
            tiles=Tiles(web.web_tile_url, web.web_tile_attribution) if web.web_tile_url else None,
            secure_cookies=web.web_secure_cookies,
        )

    async def aclose(self) -> None:
        """Close the pooled connections, on the event loop that used them (a connection left to
        the garbage collector is an unclosed socket)."""
        await self.registry.aclose()
        if self.invoicing is not None:
            await self.invoicing.aclose()
