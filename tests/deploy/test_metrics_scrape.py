"""Scrape every service's /metrics: names follow the conventions, alert metrics exist.

LEAD, TO COMPLETE: this needs the services. Each one is started as the chart starts it
(``chargenet run <service>``), on the embedded defaults (in-process bus and chain, a SQLite file),
with a free HTTP port, and its ``/metrics`` is read. A service whose ``chargenet.<service>.main``
does not exist yet is skipped by name; the cross-service check skips until all of them exist.
Extend ``SERVICE_ENV`` when a service needs more settings to start on the embedded defaults, and
give the signer its HTTP ``/metrics`` port (``CHARGENET_HTTP_PORT``, as the chart expects).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chargenet.core.metrics import NAME_PATTERN, MetricNameError, check_name
from tests.deploy.promql import exported_names, family_of
from tests.deploy.test_metrics_contract import documented_metrics

SERVICES = ("wallet", "registry", "escrow", "gateway", "invoicing", "signer")
#: Settings a service needs on top of the embedded defaults to start in a test.
SERVICE_ENV: dict[str, dict[str, str]] = {
    "gateway": {
        "CHARGENET_CHARGE_POINTS_JSON": '{"charge_points": []}',
        "CHARGENET_WS_HOST": "127.0.0.1",
        "CHARGENET_WS_PORT": "0",
    },
    "signer": {"CHARGENET_SIGNER_LISTEN": "127.0.0.1:0"},
    # Contract addresses with no code on the in-process chain: enough to start and be scraped.
    "wallet": {
        "CHARGENET_WALLET_TOKEN_ADDRESS": "0x" + "11" * 20,
        "CHARGENET_WALLET_ESCROW_ADDRESS": "0x" + "22" * 20,
    },
    "registry": {"CHARGENET_REGISTRY_ADDRESS": "0x" + "33" * 20},
}
START_TIMEOUT_SECONDS = 30.0


def _written(service: str) -> bool:
    return importlib.util.find_spec(f"chargenet.{service}.main") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(service: str, workdir: Path) -> str:
    """Start the service, return its /metrics text, stop it."""
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CHARGENET_")},
        "CHARGENET_HTTP_HOST": "127.0.0.1",
        "CHARGENET_HTTP_PORT": str(port),
        "CHARGENET_DATABASE_URL": f"sqlite:///{workdir / service}.db",
        "CHARGENET_LOG_JSON": "false",
        **SERVICE_ENV.get(service, {}),
    }
    log = workdir / f"{service}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "chargenet.cli.main", "run", service],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(
                    f"{service} exited with {process.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2.0)
                if response.status_code == 200:
                    return response.text
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        pytest.fail(
            f"{service}: no /metrics on CHARGENET_HTTP_PORT={port} within "
            f"{START_TIMEOUT_SECONDS:.0f} s:\n{log.read_text()[-3000:]}"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def scrapes() -> dict[str, str]:
    """Expositions already read in this module, by service: each service starts once."""
    return {}


def _scraped(service: str, scrapes: dict[str, str], tmp_path: Path) -> str:
    if service not in scrapes:
        scrapes[service] = scrape(service, tmp_path)
    return scrapes[service]


@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
def test_service_metrics_follow_the_conventions(
    service: str, scrapes: dict[str, str], tmp_path: Path
) -> None:
    if not _written(service):
        pytest.skip(f"chargenet.{service}.main does not exist yet")
    exposition = _scraped(service, scrapes, tmp_path)
    ours = {family_of(n) for n in exported_names(exposition) if n.startswith("chargenet_")}
    assert ours, f"{service} exports no chargenet_ metric"
    for name in sorted(ours):
        assert NAME_PATTERN.match(name), name
    for family in text_string_to_metric_families(exposition):
        if not family.name.startswith("chargenet_"):
            continue
        labels = {k for sample in family.samples for k in sample.labels}
        labels -= {"le", "quantile"}
        try:
            check_name(family.name, tuple(sorted(labels)), counter=family.type == "counter")
        except MetricNameError as error:
            pytest.fail(f"{service}: {error}")
        assert "cpo" not in labels, f"{service}: {family.name} exports a cpo label"


@pytest.mark.slow
def test_every_alert_and_dashboard_metric_is_exported_by_a_service(
    scrapes: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    missing = [s for s in SERVICES if not _written(s)]
    if missing:
        pytest.skip(f"services not written yet: {', '.join(missing)}")
    workdir = tmp_path_factory.mktemp("scrape-all")
    exported: set[str] = set()
    for service in SERVICES:
        exported |= exported_names(_scraped(service, scrapes, workdir))
    documented = documented_metrics()
    absent = sorted(set(documented) - exported)
    assert not absent, f"documented in docs/DEPLOY.md but exported by no service: {absent}"
