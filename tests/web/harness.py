"""The browser tests' world: every service in this process (the embedded network behind
``chargenet demo``, served over HTTP), simulated OCPP charge points, and Debian's Chromium
driven by Playwright.

No browser is ever downloaded: Chromium is ``/usr/bin/chromium`` (``apt-get install chromium``),
started headless with a fresh profile and no background networking.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, ViewportSize, sync_playwright

from chargenet.cli.network.client import NetworkClient
from chargenet.cli.network.embedded import EmbeddedNetwork, Endpoints, LoopThread
from chargenet.cli.network.plan import Cpo, Ports

CHROMIUM = os.environ.get("CHARGENET_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-quic",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1366, "height": 900}


def chromium_missing() -> str | None:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Network:
    endpoints: Endpoints
    network: EmbeddedNetwork
    client: NetworkClient
    loop: LoopThread

    @property
    def wallet(self) -> str:
        return self.endpoints.wallet

    @property
    def registry(self) -> str:
        return self.endpoints.registry


@contextmanager
def network(workdir: Path, cpos: tuple[Cpo, ...]) -> Iterator[Network]:
    """The services, with the driver app and the console connected to invoicing.

    The apps read their invoicing URL from the environment when they are built, before
    invoicing listens, so the ports are chosen up front.
    """
    ports = Ports(free_port(), free_port(), 0, free_port(), 0, 0, 0)
    invoicing = f"http://127.0.0.1:{ports.invoicing}"
    saved = {
        k: os.environ.get(k)
        for k in ("CHARGENET_WEB_INVOICING_URL", "CHARGENET_CONSOLE_INVOICING_URL")
    }
    os.environ["CHARGENET_WEB_INVOICING_URL"] = invoicing
    os.environ["CHARGENET_CONSOLE_INVOICING_URL"] = invoicing
    running = EmbeddedNetwork(workdir, cpos, ports=ports)
    loop = LoopThread("browser-test")
    try:
        endpoints = running.start()
        client = NetworkClient(endpoints, running.jwt_secret)
        yield Network(endpoints, running, client, loop)
        loop.run(client.aclose())
    finally:
        running.stop()
        loop.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def browser() -> Iterator[BrowserContext]:
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            accept_downloads=True,
            viewport=DESKTOP,
        )
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()


def snap(page: Page, name: str) -> list[Path]:
    """Screenshots of the page at phone and desktop width (full page), as test artifacts."""
    ARTIFACTS.mkdir(exist_ok=True)
    shots = []
    original = page.viewport_size or DESKTOP
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        path = ARTIFACTS / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)
    page.set_viewport_size(original)
    return shots
