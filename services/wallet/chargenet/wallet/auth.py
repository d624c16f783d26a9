"""Who is calling: passwords (argon2id), and bearer tokens from one of two issuers.

The development issuer signs HS256 tokens with the shared secret in the scheme of
``chargenet.core.auth`` (claims ``sub``, ``role``, plus ``exp``/``iat``/``iss``), so a driver's
token from the wallet also works at invoicing and the registry. An external issuer (an identity
provider) signs RS256/ES256 tokens the wallet only verifies, against a JWKS URL or a PEM key.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chargenet.core.auth import ALGORITHM, Principal, Role, decode_token
from chargenet.core.errors import Unauthorized
from chargenet.wallet.settings import Issuer, WalletSettings

ISSUER_NAME = "chargenet-wallet"

_hasher = PasswordHasher()
# A real hash to verify against when the account does not exist, so a wrong e-mail address costs
# the same time as a wrong password and response timing does not reveal who has an account.
_DUMMY_HASH = _hasher.hash("chargenet: no such account")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


class TokenAuthority:
    """Issues (development issuer only) and verifies the wallet's bearer tokens."""

    def __init__(self, settings: WalletSettings) -> None:
        self.issuer = settings.wallet_auth_issuer
        self._secret = settings.wallet_jwt_secret.get_secret_value()
        self._ttl = settings.wallet_token_ttl_seconds
        self._algorithms = list(settings.wallet_jwt_algorithms)
        self._expected_iss = settings.wallet_jwt_issuer or None
        self._audience = settings.wallet_jwt_audience or None
        self._public_key = settings.wallet_jwt_public_key.get_secret_value()
        self._jwks = (
            jwt.PyJWKClient(settings.wallet_jwt_jwks_url, cache_keys=True, lifespan=300)
            if settings.wallet_auth_issuer is Issuer.EXTERNAL and settings.wallet_jwt_jwks_url
            else None
        )

    @property
    def fetches_keys(self) -> bool:
        """Whether verifying may fetch the identity provider's key set (network I/O)."""
        return self._jwks is not None  # only set for an external issuer with a JWKS URL

    @property
    def issues_tokens(self) -> bool:
        return self.issuer is Issuer.DEVELOPMENT

    def issue(self, subject: str, role: Role = Role.DRIVER) -> IssuedToken:
        if not self.issues_tokens:
            raise Unauthorized("tokens are issued by the external identity provider")
        now = int(time.time())
        claims = {
            "sub": subject,
            "role": role.value,
            "iat": now,
            "exp": now + self._ttl,
            "iss": ISSUER_NAME,
        }
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=ALGORITHM), self._ttl)

    def verify(self, token: str) -> Principal:
        if self.issuer is Issuer.DEVELOPMENT:
            # The same check invoicing makes: a token valid here is valid there.
            return decode_token(token, self._secret)
        return self._verify_external(token)

    def _verify_external(self, token: str) -> Principal:
        try:
            key: Any = (
                self._jwks.get_signing_key_from_jwt(token).key
                if self._jwks is not None
                else self._public_key
            )
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                issuer=self._expected_iss,
                audience=self._audience,
                options={"require": ["sub", "exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.PyJWKClientError as error:
            raise Unauthorized(f"invalid token: no usable signing key ({error})") from None
        except jwt.InvalidTokenError as error:
            raise Unauthorized(f"invalid token: {error}") from None
        subject, role = claims.get("sub"), claims.get("role", Role.DRIVER.value)
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("invalid token: sub must be a non-empty string")
        if role not in {r.value for r in Role}:
            raise Unauthorized("invalid token: role must be driver or cpo")
        return Principal(subject=subject, role=Role(role))


_bearer = HTTPBearer(auto_error=False)


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required")
    authority: TokenAuthority = request.app.state.tokens
    if authority.fetches_keys:
        # Its key set may be fetched from the identity provider: not on the event loop.
        return await asyncio.to_thread(authority.verify, credentials.credentials)
    # A local key: checked on the loop, as a worker thread's hop would cost more than the check.
    return authority.verify(credentials.credentials)


CurrentPrincipal = Annotated[Principal, Depends(principal)]
