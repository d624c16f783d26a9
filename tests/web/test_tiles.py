"""With a tile server configured (``CHARGENET_WEB_TILE_URL``), the station map is Leaflet (vendored
from npm, served by the wallet) over that server's tiles, with the same markers; without one it is
the offline SVG (tests/web/test_journey.py). The tile server here is a local one that draws plain
tiles and counts what it was asked for: nothing leaves the machine."""

from __future__ import annotations

import asyncio
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import uvicorn
from playwright.sync_api import expect

from chargenet.cli.network.embedded import LoopThread
from tests.wallet.harness import World, world
from tests.web.harness import browser, chromium_missing, free_port, snap

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing())),
]


def _png(rgb: tuple[int, int, int], size: int = 256) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * size))
        + chunk(b"IEND", b"")
    )


class TileServer(ThreadingHTTPServer):
    tile = _png((222, 232, 226))
    requested: list[str]


class _Tiles(BaseHTTPRequestHandler):
    server: TileServer

    def do_GET(self) -> None:
        self.server.requested.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.server.tile)))
        self.end_headers()
        self.wfile.write(self.server.tile)

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture(scope="module")
def tiles() -> Iterator[TileServer]:
    server = TileServer(("127.0.0.1", 0), _Tiles)
    server.requested = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, tiles: TileServer
) -> Iterator[tuple[World, str]]:
    """The wallet harness's world with the wallet and the registry served over HTTP."""
    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv(
            "CHARGENET_WEB_TILE_URL", f"http://127.0.0.1:{tiles.server_port}/{{z}}/{{x}}/{{y}}.png"
        )
        env.setenv("CHARGENET_WEB_TILE_ATTRIBUTION", "test tiles")
        env.setenv("CHARGENET_WEB_REGISTRY_URL", f"http://127.0.0.1:{port}")
        with world(tmp_path_factory.mktemp("tiles")) as running:
            loop = LoopThread("tiles-test")
            # The apps' lifespans already run under the harness's test clients.
            servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
            for app, at in ((running.registry.app, port), (running.wallet.app, 0)):
                servers.append(loop.run(_serve_without_lifespan(app, at)))
            wallet_port = servers[1][0].servers[0].sockets[0].getsockname()[1]
            try:
                yield running, f"http://127.0.0.1:{wallet_port}"
            finally:
                for server, _task in servers:
                    server.should_exit = True
                loop.run(asyncio.wait([task for _server, task in servers], timeout=10))
                # The pages' clients pooled their connections on this loop, not the lifespan's.
                loop.run(running.wallet.app.state.driver_app.config.aclose())
                loop.close()


async def _serve_without_lifespan(
    app: object, port: int
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")  # type: ignore[arg-type]
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.02)
    return server, task


def test_station_map_uses_leaflet_over_the_configured_tiles(
    served: tuple[World, str], tiles: TileServer
) -> None:
    running, wallet = served
    station = running.station()
    running.charge_point_online(station)
    with browser() as context:
        page = context.new_page()
        page.goto(f"{wallet}/app/signin")
        page.get_by_text("New here? Create an account").click()
        page.locator("#new-email").fill("tiles@example.org")
        page.locator("#new-password").fill("correct horse battery")
        page.get_by_role("button", name="Create account").click()
        page.goto(f"{wallet}/app/stations")
        expect(page.locator("#map.leaflet-container")).to_be_visible()
        expect(page.locator("#map path.leaflet-interactive")).to_have_count(1)
        area = page.locator("#map").bounding_box()
        marker = page.locator("#map path.leaflet-interactive").bounding_box()
        assert area is not None and marker is not None
        assert area["x"] < marker["x"] < area["x"] + area["width"] - marker["width"]
        assert area["y"] < marker["y"] < area["y"] + area["height"] - marker["height"]
        expect(page.locator("#map .leaflet-tile-loaded").first).to_be_visible()
        expect(page.locator("#map .leaflet-control-attribution")).to_contain_text("test tiles")
        assert tiles.requested and all(p.endswith(".png") for p in tiles.requested)
        # Every script and style came from the wallet itself (no CDN).
        assert page.evaluate("typeof L.map") == "function"
        snap(page, "driver-stations-tiles")
