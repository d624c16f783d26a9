"""Bad configuration ends the process with one message naming the setting, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from chargenet.cli.commands.check import settings_class, uses_database
from chargenet.cli.commands.run import SERVICES
from chargenet.core.settings import ConfigurationError, CoreSettings, load_settings
from chargenet.gateway.settings import GatewaySettings
from chargenet.wallet.settings import WalletSettings


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHARGENET_")}
    return subprocess.run(
        [sys.executable, "-m", "chargenet.cli.main", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_malformed_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGENET_KAFKA_PARTITIONS", "many")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(CoreSettings)
    assert caught.value.message.startswith("configuration error: CHARGENET_KAFKA_PARTITIONS")


def test_production_refuses_development_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGENET_MODE", "production")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(CoreSettings)
    assert "CHARGENET_SIGNER_TOKEN" in caught.value.message


def test_secrets_are_masked() -> None:
    settings = CoreSettings(signer_token="s3cret")  # type: ignore[arg-type]
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.model_dump())


def test_the_cli_exits_with_one_line_for_a_bad_setting() -> None:
    result = run_cli("check", CHARGENET_HTTP_PORT="eighty")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "CHARGENET_HTTP_PORT" in result.stderr.strip().splitlines()[-1]


def test_the_cli_names_an_unreachable_broker() -> None:
    result = run_cli(
        "check",
        CHARGENET_BUS="kafka",
        CHARGENET_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        CHARGENET_KAFKA_CONNECT_TIMEOUT_SECONDS="2",
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "CHARGENET_KAFKA_BOOTSTRAP_SERVERS" in result.stderr


def test_the_cli_names_an_unreachable_database() -> None:
    result = run_cli(
        "check", CHARGENET_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "CHARGENET_DATABASE_URL" in result.stderr


def test_production_refuses_a_short_token_signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGENET_MODE", "production")
    monkeypatch.setenv("CHARGENET_SIGNER_TOKEN", "a-real-token")
    monkeypatch.setenv("CHARGENET_BUS", "kafka")
    monkeypatch.setenv("CHARGENET_DATABASE_URL", "postgresql://wallet@db/wallet")
    monkeypatch.setenv("CHARGENET_CHAIN_RPC_URL", "http://node:8545")
    monkeypatch.setenv("CHARGENET_WALLET_JWT_SECRET", "x" * 31)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(WalletSettings)
    assert "CHARGENET_WALLET_JWT_SECRET" in caught.value.message
    assert "32 bytes" in caught.value.message
    monkeypatch.setenv("CHARGENET_WALLET_JWT_SECRET", "x" * 32)
    assert load_settings(WalletSettings).wallet_jwt_secret.get_secret_value() == "x" * 32


def test_production_asks_no_database_of_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway keeps no tables: production mode does not make an operator provision a
    PostgreSQL database for it, while a service with a database still refuses SQLite."""
    monkeypatch.delenv("CHARGENET_DATABASE_URL", raising=False)
    monkeypatch.setenv("CHARGENET_MODE", "production")
    monkeypatch.setenv("CHARGENET_SIGNER_TOKEN", "a-real-token")
    monkeypatch.setenv("CHARGENET_BUS", "kafka")
    monkeypatch.setenv("CHARGENET_CHAIN_RPC_URL", "http://node:8545")
    monkeypatch.setenv("CHARGENET_CHARGE_POINTS_JSON", "{}")
    monkeypatch.setenv("CHARGENET_WALLET_JWT_SECRET", "x" * 32)
    gateway = load_settings(GatewaySettings)
    assert not gateway.uses_database
    assert gateway.database_url.startswith("sqlite")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(WalletSettings)
    assert "SQLite is refused in production mode" in caught.value.message
    with pytest.raises(ConfigurationError) as caught:
        load_settings(CoreSettings)
    assert "SQLite is refused in production mode" in caught.value.message


def test_every_service_names_its_settings_class_as_the_cli_check_looks_for_it() -> None:
    classes = {service: settings_class(service) for service in SERVICES}
    assert all(issubclass(own, CoreSettings) for own in classes.values())
    assert classes["wallet"] is WalletSettings and classes["gateway"] is GatewaySettings
    assert [s for s in SERVICES if not uses_database(s)] == ["gateway"]


def test_the_cli_check_tries_no_database_for_the_gateway() -> None:
    unreachable = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    result = run_cli("check", CHARGENET_SERVICE_NAME="gateway", CHARGENET_DATABASE_URL=unreachable)
    assert result.returncode == 0, result.stderr
    assert "database=none (the gateway has none)" in result.stdout
    wallet = run_cli("check", CHARGENET_SERVICE_NAME="wallet", CHARGENET_DATABASE_URL=unreachable)
    assert wallet.returncode == 2, wallet.stderr
    assert "CHARGENET_DATABASE_URL" in wallet.stderr


def test_the_cli_migrates_no_database_for_the_gateway() -> None:
    result = run_cli("migrate", "gateway", CHARGENET_DATABASE_URL="sqlite:///:memory:")
    assert result.returncode == 2
    assert "the gateway keeps no database" in result.stderr
