"""Signing in to the console: the CPO's own API bearer token (role ``cpo``), kept in an HttpOnly
cookie; forms that change something carry a CSRF token derived from it.

A CPO's identity comes from the same issuer as its API access, so the console adds no account
system of its own: whoever may change the CPO's stations through the API may do it here.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from fastapi import Request

from chargenet.core.auth import Role, decode_token
from chargenet.core.errors import Forbidden, Unauthorized

COOKIE = "chargenet_cpo"
PATH = "/console"


@dataclass(frozen=True)
class Operator:
    cpo_id: str
    token: str

    @property
    def csrf(self) -> str:
        return hmac.new(self.token.encode(), b"chargenet-console-csrf", hashlib.sha256).hexdigest()

    def check(self, submitted: str | None) -> None:
        if not submitted or not hmac.compare_digest(submitted, self.csrf):
            raise Forbidden("the form is out of date; reload the page and try again")


def verify(request: Request, token: str) -> Operator:
    """The CPO this token names; ``Unauthorized`` with the reason when it names none."""
    if not token:
        raise Unauthorized("paste your CPO access token")
    principal = decode_token(token, request.app.state.jwt_secret)
    if principal.role is not Role.CPO:
        raise Unauthorized("this is not a CPO token (its role is driver)")
    return Operator(principal.subject, token)


def operator(request: Request) -> Operator | None:
    """The CPO signed in with the cookie; None when nobody is (or the token expired)."""
    try:
        return verify(request, request.cookies.get(COOKIE, ""))
    except Unauthorized:
        return None
