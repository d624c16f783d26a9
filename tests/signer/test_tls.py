"""The signer over TLS, and mutual TLS: the channel to the service that holds the keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from pydantic import SecretStr, ValidationError
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from chargenet.cli.network.tls import issue_certificates
from chargenet.core.settings import ConfigurationError, CoreSettings, Mode
from chargenet.core.signer_client import SignerClient, SignerError, signer_client
from chargenet.signer.settings import SignerSettings
from tests.signer.harness import PROBE, TOKEN, InProcessSigner, inprocess_signer, signer_env


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tls")
    issue_certificates(folder, {"signer": ["127.0.0.1", "localhost"], "escrow": ["escrow"]})
    return folder


def _signer(tmp: Path, certificates: Path, *, mutual: bool) -> Iterator[InProcessSigner]:
    provider = EthereumTesterProvider()
    w3 = Web3(provider)
    tx_hash = w3.eth.send_transaction({"from": w3.eth.accounts[0], "data": PROBE["bytecode"]})
    probe = w3.eth.wait_for_transaction_receipt(tx_hash)["contractAddress"]
    assert probe is not None
    tls = {
        "CHARGENET_SIGNER_TLS_CERT_FILE": str(certificates / "signer.crt"),
        "CHARGENET_SIGNER_TLS_KEY_FILE": str(certificates / "signer.key"),
    }
    if mutual:
        tls["CHARGENET_SIGNER_TLS_CLIENT_CA_FILE"] = str(certificates / "ca.crt")
    env = signer_env(
        f"sqlite:///{tmp}/signer.db", [Account.create()], probe, "inprocess://eth-tester", **tls
    )
    with inprocess_signer(env, provider=provider) as running:
        yield running


def _settings(url: str, certificates: Path | None, *, client_cert: bool = False) -> CoreSettings:
    files = {}
    if certificates is not None:
        files["signer_ca_file"] = certificates / "ca.crt"
        if client_cert:
            files["signer_client_cert_file"] = certificates / "escrow.crt"
            files["signer_client_key_file"] = certificates / "escrow.key"
    return CoreSettings(signer_url=url, signer_token=SecretStr(TOKEN), **files)


def _refused(client: SignerClient) -> None:
    with client, pytest.raises(SignerError):
        client.list_keys()


def test_over_tls_a_client_that_trusts_the_ca_is_served_and_plaintext_is_not(
    tmp_path: Path, certificates: Path
) -> None:
    for running in _signer(tmp_path, certificates, mutual=False):
        with signer_client(_settings(running.url, certificates)) as client:
            assert [key.alias for key in client.list_keys()] == ["k0"]
        _refused(SignerClient(running.url, TOKEN, timeout=2, retry_for=0.5))


def test_with_mutual_tls_a_client_without_its_certificate_is_refused(
    tmp_path: Path, certificates: Path
) -> None:
    for running in _signer(tmp_path, certificates, mutual=True):
        settings = _settings(running.url, certificates, client_cert=True)
        with signer_client(settings) as client:
            assert [key.alias for key in client.list_keys()] == ["k0"]
        _refused(signer_client(_settings(running.url, certificates), timeout=2, retry_for=0.5))


def test_production_refuses_plaintext_to_and_from_the_signer(certificates: Path) -> None:
    production = {"mode": Mode.PRODUCTION, "signer_token": SecretStr("a-real-token")}
    settings = CoreSettings.model_construct(**(CoreSettings().model_dump() | production))
    with pytest.raises(ConfigurationError, match="CHARGENET_SIGNER_CA_FILE"):
        signer_client(settings)
    with pytest.raises(ValidationError, match="production mode serves the signer over TLS"):
        SignerSettings(
            mode=Mode.PRODUCTION,
            database_url="postgresql://db/signer",
            chain_rpc_url="http://node:8545",
            bus="kafka",
            signer_token=SecretStr("a-real-token"),
            signer_hd_mnemonic=SecretStr("not the development mnemonic"),
            signer_callers=SecretStr('{"escrow": {"token": "a-real-token", "keys": ["*"]}}'),
        )
    with pytest.raises(ValidationError, match="go together"):
        CoreSettings(signer_ca_file=certificates / "ca.crt", signer_client_cert_file=Path("x"))
    with pytest.raises(ValidationError, match="go together"):
        SignerSettings(signer_tls_cert_file=certificates / "signer.crt")
