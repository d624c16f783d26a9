"""Accounts and authentication: passwords, the development issuer's tokens (valid at invoicing
too), expiry, roles, the external issuer (PEM key and JWKS) and the production refusal."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from eth_account import Account
from fastapi.testclient import TestClient
from pydantic import ValidationError

from chargenet.core.auth import Role, issue_token
from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.db import Database
from chargenet.core.errors import Unauthorized
from chargenet.core.settings import DEVELOPMENT_SECRET
from chargenet.invoicing.main import create_app as create_invoicing_app
from chargenet.invoicing.main import migrate as migrate_invoicing
from chargenet.invoicing.settings import InvoicingSettings
from chargenet.signer.settings import DEVELOPMENT_MNEMONIC
from chargenet.wallet.auth import TokenAuthority
from chargenet.wallet.models import Driver as DriverRow
from chargenet.wallet.settings import WalletSettings
from tests.wallet.harness import World


def test_register_login_and_wrong_password(env: World) -> None:
    driver = env.driver(password="a long enough password")
    me = env.wallet.get("/v1/me", headers=driver.headers)
    assert me.status_code == 200
    assert me.json()["address"] == driver.address
    assert me.json()["id_token"].startswith("CN") and len(me.json()["id_token"]) == 18

    wrong = env.login(driver.email, "not the password")
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "wrong e-mail address or password"
    unknown = env.login("nobody@example.org", "a long enough password")
    assert unknown.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"]

    again = env.wallet.post(
        "/v1/accounts", json={"email": driver.email.upper(), "password": "another password"}
    )
    assert again.status_code == 409
    short = env.wallet.post("/v1/accounts", json={"email": "x@example.org", "password": "short"})
    assert short.status_code == 422 and short.json()["detail"].startswith("password:")
    bad = env.wallet.post("/v1/accounts", json={"email": "not-an-email", "password": "x" * 12})
    assert bad.status_code == 422


def test_each_driver_has_its_own_custodial_key(env: World) -> None:
    first, second = env.driver(), env.driver()
    assert first.address != second.address
    # The key is the signer's HD key hd/<1000 + account number>, derived from its seed (here the
    # public development mnemonic), so the address is checkable from the seed alone.
    Account.enable_unaudited_hdwallet_features()
    for driver in (first, second):
        with env.wallet_db.session() as session:
            alias = session.scalars(
                sa.select(DriverRow.key_alias).where(DriverRow.driver_id == driver.driver_id)
            ).one()
        index = int(alias.removeprefix("hd/"))
        assert index > 1000
        derived = Account.from_mnemonic(
            DEVELOPMENT_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}"
        )
        assert derived.address == driver.address


def test_expired_forged_and_missing_tokens_are_401(env: World) -> None:
    driver = env.driver()
    expired = jwt.encode(
        {"sub": driver.driver_id, "role": "driver", "exp": int(time.time()) - 10},
        DEVELOPMENT_SECRET,
        algorithm="HS256",
    )
    answer = env.wallet.get("/v1/me", headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401
    assert answer.json()["detail"] == "the token has expired"

    forged = jwt.encode({"sub": driver.driver_id, "role": "driver"}, "x" * 32, algorithm="HS256")
    answer = env.wallet.get("/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert answer.status_code == 401 and "Signature verification failed" in answer.json()["detail"]
    assert env.wallet.get("/v1/me").status_code == 401

    stranger = issue_token("no-such-driver", Role.DRIVER, DEVELOPMENT_SECRET)
    answer = env.wallet.get("/v1/me", headers={"Authorization": f"Bearer {stranger}"})
    assert answer.status_code == 401 and answer.json()["detail"] == "no account for this token"
    cpo = issue_token("cpo-1", Role.CPO, DEVELOPMENT_SECRET)
    assert env.wallet.get("/v1/me", headers={"Authorization": f"Bearer {cpo}"}).status_code == 403


def test_a_wallet_token_works_at_invoicing(env: World, tmp_path: Path) -> None:
    driver = env.driver()
    claims = jwt.decode(driver.token, DEVELOPMENT_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["role"]) == (driver.driver_id, "driver")
    assert claims["exp"] - claims["iat"] == 3600
    db = Database(f"sqlite:///{tmp_path}/invoicing.db")
    migrate_invoicing(db)
    app = create_invoicing_app(InvoicingSettings(), InMemoryBus(), db)
    with TestClient(app) as invoicing:
        answer = invoicing.get("/v1/invoices", headers=driver.headers)
        assert answer.status_code == 200 and answer.json()["invoices"] == []
        assert invoicing.get("/v1/invoices").status_code == 401
    db.dispose()


# -- the external issuer -------------------------------------------------------------------------


def _pem(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "idp|42", "role": "driver", "iat": now, "exp": now + 60, **extra}


def test_external_issuer_with_a_public_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    settings = WalletSettings(
        wallet_auth_issuer="external",
        wallet_jwt_public_key=_pem(key),
        wallet_jwt_issuer="https://idp.example",
        wallet_jwt_audience="chargenet",
    )
    authority = TokenAuthority(settings)
    assert not authority.issues_tokens
    good = jwt.encode(_claims(iss="https://idp.example", aud="chargenet"), key, algorithm="RS256")
    principal = authority.verify(good)
    assert (principal.subject, principal.role) == ("idp|42", Role.DRIVER)

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "wrong key": jwt.encode(
            _claims(iss="https://idp.example", aud="chargenet"), other, algorithm="RS256"
        ),
        "wrong audience": jwt.encode(
            _claims(iss="https://idp.example", aud="someone-else"), key, algorithm="RS256"
        ),
        "wrong issuer": jwt.encode(
            _claims(iss="https://evil.example", aud="chargenet"), key, algorithm="RS256"
        ),
        "expired": jwt.encode(
            _claims(iss="https://idp.example", aud="chargenet", exp=int(time.time()) - 5),
            key,
            algorithm="RS256",
        ),
        # Algorithm confusion: an HS256 token "signed" with the public key must not pass.
        "hs256": jwt.encode(
            _claims(iss="https://idp.example", aud="chargenet"),
            "the development secret of someone",
            algorithm="HS256",
        ),
    }
    for name, token in cases.items():
        with pytest.raises(Unauthorized):
            authority.verify(token)
            pytest.fail(name)
    with pytest.raises(Unauthorized, match="tokens are issued by the external"):
        authority.issue("idp|42")


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json", key
    finally:
        server.shutdown()
        server.server_close()


def test_external_issuer_with_jwks(jwks_server: tuple[str, Any]) -> None:
    url, key = jwks_server
    authority = TokenAuthority(
        WalletSettings(wallet_auth_issuer="external", wallet_jwt_jwks_url=url)
    )
    token = jwt.encode(_claims(), key, algorithm="ES256", headers={"kid": "k1"})
    assert authority.verify(token).subject == "idp|42"
    unknown_kid = jwt.encode(_claims(), key, algorithm="ES256", headers={"kid": "k2"})
    with pytest.raises(Unauthorized, match="no usable signing key"):
        authority.verify(unknown_kid)


def test_configuration_is_checked() -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        WalletSettings(wallet_auth_issuer="external")
    with pytest.raises(ValidationError, match="asymmetric algorithms only"):
        WalletSettings(
            wallet_auth_issuer="external",
            wallet_jwt_public_key="x",
            wallet_jwt_algorithms=["HS256"],
        )
    production: dict[str, Any] = {
        "mode": "production",
        "bus": "kafka",
        "database_url": "postgresql://db/wallet",
        "chain_rpc_url": "http://node:8545",
        "signer_token": "s" * 32,
    }
    with pytest.raises(ValidationError, match="wallet_jwt_secret: the development default"):
        WalletSettings(**production)
    assert WalletSettings(**production, wallet_jwt_secret="w" * 32).mode == "production"
    with pytest.raises(ValidationError, match="wallet_token_address"):
        WalletSettings(wallet_token_address="0x1234")
