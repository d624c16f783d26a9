"""Bearer tokens: HS256 JWTs issued by the wallet service, claims ``sub`` and ``role``.

One scheme for every REST service (invoicing, registry, ...): a service puts the shared secret in
``app.state.jwt_secret`` and takes ``CurrentPrincipal`` as a dependency; what a principal may see
or change is the service's own rule (e.g. a CPO only its own invoices or stations).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chargenet.core.errors import Unauthorized

ALGORITHM = "HS256"


class Role(StrEnum):
    DRIVER = "driver"
    CPO = "cpo"


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role


def decode_token(token: str, secret: str) -> Principal:
    principal, expires = _verified(token, secret)
    # Checked at every use: the cache below keeps a token's claims, not its validity.
    if expires is not None and expires <= time.time():
        raise Unauthorized("the token has expired")
    return principal


# A driver's app sends the same token with every request and every event stream it opens: its
# signature and claims are checked once (138 us a check), its expiry at every use. Invalid tokens
# raise and are not kept.
@functools.lru_cache(maxsize=4096)
def _verified(token: str, secret: str) -> tuple[Principal, float | None]:
    """The token's principal and expiry (``exp``, None if it has none), its signature checked."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "role"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.InvalidTokenError as error:
        raise Unauthorized(f"invalid token: {error}") from None
    subject, role = claims.get("sub"), claims.get("role")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("invalid token: sub must be a non-empty string")
    if not isinstance(role, str) or role not in {r.value for r in Role}:
        raise Unauthorized("invalid token: role must be driver or cpo")
    expires = claims.get("exp")
    return Principal(subject=subject, role=Role(role)), None if expires is None else float(expires)


def issue_token(subject: str, role: Role, secret: str, **claims: object) -> str:
    """A token as the wallet issues them (used by tests and the demo)."""
    return jwt.encode({"sub": subject, "role": role.value, **claims}, secret, algorithm=ALGORITHM)


_bearer = HTTPBearer(auto_error=False)


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    # Async although it does no I/O: FastAPI runs a sync dependency in a worker thread, a hop
    # that costs more than checking an HS256 signature.
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required")
    secret: str = request.app.state.jwt_secret
    return decode_token(credentials.credentials, secret)


CurrentPrincipal = Annotated[Principal, Depends(principal)]
