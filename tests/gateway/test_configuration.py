"""Configuration: credentials are hashed and validated, settings refuse inconsistent profiles."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from chargenet.core.settings import ConfigurationError, load_settings
from chargenet.gateway.credentials import CredentialsError, CredentialStore, hash_password, main
from chargenet.gateway.settings import GatewaySettings


def test_store_checks_passwords_against_scrypt_hashes(tmp_path: Path) -> None:
    password = "a-long-enough-password"
    path = tmp_path / "cps.json"
    path.write_text(
        json.dumps({"charge_points": [{"id": "CP-1", "password_hash": hash_password(password)}]})
    )
    store = CredentialStore.from_file(path)
    assert "CP-1" in store and "CP-2" not in store
    assert store.check("CP-1", password)
    assert store.check("CP-1", password)  # the remembered path
    assert not store.check("CP-1", "a-long-enough-passwore")
    assert not store.check("CP-2", password)
    assert not store.check("CP-1", "short")
    assert password not in path.read_text()


def test_store_refuses_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="scrypt"):
        CredentialStore.from_json('{"charge_points": [{"id": "CP-1", "password_hash": "md5$x"}]}')
    with pytest.raises(CredentialsError, match="charge point credentials"):
        CredentialStore.from_json('{"charge_points": [{"id": "bad id with spaces"}]}')
    with pytest.raises(CredentialsError, match="cannot read"):
        CredentialStore.from_file(tmp_path / "missing.json")


def test_hash_command_prints_a_usable_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-enough-password\n"))
    main(["hash"])
    printed = json.loads(capsys.readouterr().out)
    store = CredentialStore.from_json(json.dumps({"charge_points": [{"id": "CP-1", **printed}]}))
    assert store.check("CP-1", "a-long-enough-password")


def test_settings_refuse_inconsistent_security(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGENET_CHARGE_POINTS_JSON", '{"charge_points": []}')
    with pytest.raises(ConfigurationError, match="tls_cert_file"):
        load_settings(GatewaySettings, security_profile=2)
    with pytest.raises(ConfigurationError, match="tls_ca_file"):
        load_settings(
            GatewaySettings,
            security_profile=3,
            tls_cert_file=Path("s.crt"),
            tls_key_file=Path("s.key"),
        )
    monkeypatch.delenv("CHARGENET_CHARGE_POINTS_JSON")
    with pytest.raises(ConfigurationError, match="CHARGENET_CHARGE_POINTS_FILE"):
        load_settings(GatewaySettings)
