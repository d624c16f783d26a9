"""Signing in on the pages: the wallet's bearer token in an HttpOnly cookie, and CSRF tokens.

The cookie is ``SameSite=Lax`` (a cross-site form post does not carry it), and every form that
changes something also carries a token derived from the access token, which a page of another
site cannot read.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from fastapi import Request, Response

from chargenet.core.auth import Principal, Role
from chargenet.core.errors import Forbidden, Unauthorized
from chargenet.wallet.auth import TokenAuthority

COOKIE = "chargenet_driver"
PATH = "/app"


@dataclass(frozen=True)
class SignedIn:
    token: str
    principal: Principal

    @property
    def csrf(self) -> str:
        return hmac.new(self.token.encode(), b"chargenet-web-csrf", hashlib.sha256).hexdigest()

    def check(self, submitted: str | None) -> None:
        if not submitted or not hmac.compare_digest(submitted, self.csrf):
            raise Forbidden("the form is out of date; reload the page and try again")


def signed_in(request: Request) -> SignedIn | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    authority: TokenAuthority = request.app.state.tokens
    try:
        principal = authority.verify(token)
    except Unauthorized:
        return None  # expired or from an old secret: sign in again
    if principal.role is not Role.DRIVER:
        return None
    return SignedIn(token, principal)


def remember(response: Response, token: str, max_age: int, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE, token, max_age=max_age, path=PATH, httponly=True, samesite="lax", secure=secure
    )


def forget(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH)
