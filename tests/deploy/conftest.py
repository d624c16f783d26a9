"""Fixtures for the deployment tests: the helm binary and the rendered chart.

The helm binary comes from ``scripts/helm/install.sh`` (CI runs it first). Without it these tests
skip and say how to get it, unless ``CHARGENET_REQUIRE_COMPONENTS=1`` (``make test``, CI), where a
missing tool fails instead of hiding the checks.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from tests.deploy.chart import Helm, Manifest

#: Python packages every module here needs (module -> distribution), dev dependencies.
NEEDED = {"yaml": "pyyaml", "jsonschema": "jsonschema"}
ABSENT = sorted(dist for module, dist in NEEDED.items() if importlib.util.find_spec(module) is None)
if ABSENT:
    # Without them not even collection works; say so once instead of one error per module.
    collect_ignore_glob = ["test_*.py"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "helm: needs the helm binary (scripts/helm/install.sh builds it)"
    )
    if ABSENT:
        # A warning, not an error, even in CI: a missing dev dependency must not stop every other
        # engineer's test run. The workspace's dev dependencies list them.
        message = f"tests/deploy not collected: {', '.join(ABSENT)} not installed (dev deps)"
        config.issue_config_time_warning(pytest.PytestConfigWarning(message), stacklevel=2)


def missing(what: str) -> NoReturn:
    if os.environ.get("CHARGENET_REQUIRE_COMPONENTS") == "1":
        pytest.fail(what)
    pytest.skip(what)


@pytest.fixture(scope="session")
def helm() -> Helm:
    from tests.deploy.chart import INSTALL_SCRIPT, Helm, find_helm

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
    from tests.deploy.chart import PRODUCTION_EXAMPLE

    return helm.render([PRODUCTION_EXAMPLE])
