"""Station ids in URL paths: always one path segment, percent-encoded, whatever the id holds.

A station id is any printable ASCII, '/' included (OCPI location ids are free strings). Servers
decode %2F before routing, so ``PUT /v1/cpo/stations/A%2Ftariff`` (update station ``A/tariff``)
would reach the route of station A's tariff, and a ``:path`` parameter cannot tell the two apart
either. Under the station routes' prefixes the path is therefore routed as it was sent: each
segment decoded and encoded again whole, so an id's '/' stays inside its segment, and the route
takes the id as :data:`StationId`, which decodes it once. The registry's routes and console and
the wallet's station page use it.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, unquote

from fastapi import Depends, Path
from starlette.types import ASGIApp, Receive, Scope, Send

#: Why a path under a station prefix matched no route; the catch-all routes answer with it.
ONE_SEGMENT = "a station id is one path segment, '/', '#', '?' and '%' in it percent-encoded"


def path_segment(value: str) -> str:
    """``value`` as one URL path segment. Jinja's ``urlencode`` would leave '/' as it is."""
    return quote(value, safe="")


class StationPaths:
    """ASGI middleware: requests whose path starts with one of ``prefixes`` are routed on their
    path as sent, so a station id's %2F does not split its segment."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _route_path(scope).startswith(self.prefixes):
            # In place: middleware outside this one reads the route the router records in scope.
            scope["path"] = _as_sent(scope)
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    return path.removeprefix(scope.get("root_path", ""))


def _as_sent(scope: Scope) -> str:
    raw: bytes | None = scope.get("raw_path")
    if raw is None:  # optional in ASGI: then an id's '/' is lost, but no id is decoded twice
        segments = scope["path"].split("/")
    else:
        segments = [unquote(s) for s in raw.decode("latin-1").split("/")]
    return "/".join(path_segment(s) for s in segments)


async def _station_id(
    station_id: Annotated[str, Path(description="percent-encoded, '/' in it as %2F")],
) -> str:
    # Async so FastAPI calls it on the loop, not through a worker thread.
    return unquote(station_id)


#: A route's station id: its path segment, decoded once.
StationId = Annotated[str, Depends(_station_id)]
