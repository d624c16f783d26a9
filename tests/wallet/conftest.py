"""The wallet's world (chain, signer, registry, bus, wallet), shared by a test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.wallet.harness import World, world


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with world(tmp_path_factory.mktemp("wallet")) as running:
        yield running
