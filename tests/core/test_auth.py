"""Bearer tokens: a token's signature is checked once, its expiry at every use."""

from __future__ import annotations

import time

import pytest

from chargenet.core import auth
from chargenet.core.auth import Principal, Role, decode_token, issue_token
from chargenet.core.errors import Unauthorized

SECRET = "test-secret-with-at-least-32-bytes!!"


def test_a_token_accepted_before_is_refused_once_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time()
    token = issue_token("alice", Role.DRIVER, SECRET, exp=int(now) + 60)
    assert decode_token(token, SECRET) == Principal("alice", Role.DRIVER)
    assert decode_token(token, SECRET) == Principal("alice", Role.DRIVER)
    assert auth._verified.cache_info().hits >= 1  # the second use did not check it again

    monkeypatch.setattr(auth.time, "time", lambda: now + 61)
    with pytest.raises(Unauthorized, match="the token has expired"):
        decode_token(token, SECRET)


def test_a_refused_token_is_refused_again_and_never_kept() -> None:
    forged = issue_token("alice", Role.DRIVER, "another-secret-that-is-also-32-bytes")
    for _ in range(2):
        with pytest.raises(Unauthorized, match="invalid token"):
            decode_token(forged, SECRET)
    # The same token under its own secret is another key: what one secret accepts, the other
    # does not inherit.
    assert decode_token(forged, "another-secret-that-is-also-32-bytes").subject == "alice"
    with pytest.raises(Unauthorized):
        decode_token(forged, SECRET)


def test_a_token_without_expiry_stays_valid() -> None:
    token = issue_token("cpo-a", Role.CPO, SECRET)
    assert decode_token(token, SECRET).role is Role.CPO
