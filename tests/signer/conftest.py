"""Fixtures of the signer's tests against the real Hardhat node."""

from __future__ import annotations

import pytest
from web3 import Web3

from tests.signer.harness import deploy_probe


@pytest.fixture(scope="module")
def w3(rpc_url: str) -> Web3:
    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 60}))


@pytest.fixture(scope="module")
def probe(w3: Web3) -> str:
    """A fresh SignerProbe contract for each test module."""
    return deploy_probe(w3)
