"""Fixtures for the deployment tests: the helm binary and the rendered chart.

The helm binary comes from ``scripts/helm/install.sh`` (CI runs it first). Without it these tests
skip and say how to get it, unless ``CHARGENET_REQUIRE_COMPONENTS=1`` (``make test``, CI), where a
missing tool fails instead of hiding the checks.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from tests.deploy.chart import INSTALL_SCRIPT, PRODUCTION_EXAMPLE, Helm, Manifest, find_helm


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "helm: needs the helm binary (scripts/helm/install.sh builds it)"
    )


def missing(what: str) -> NoReturn:
    if os.environ.get("CHARGENET_REQUIRE_COMPONENTS") == "1":
        pytest.fail(what)
    pytest.skip(what)


@pytest.fixture(scope="session")
def helm() -> Helm:
    binary = find_helm()
    if binary is None or not binary.is_file():
        missing(
            f"helm binary not found ($HELM, $CHARGENET_CACHE/bin/helm, PATH): "
            f"run {INSTALL_SCRIPT.relative_to(INSTALL_SCRIPT.parents[2])}"
        )
    return Helm(binary)


@pytest.fixture(scope="session")
def default_manifests(helm: Helm) -> list[Manifest]:
    return helm.render()


@pytest.fixture(scope="session")
def production_manifests(helm: Helm) -> list[Manifest]:
    return helm.render([PRODUCTION_EXAMPLE])
