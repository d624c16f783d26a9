"""Every REST service answers a client's mistake in one shape, ``{"error", "detail"}``, with a 4xx:
FastAPI's own request checks and a token that names no valid role included."""

from __future__ import annotations

from typing import Annotated

import jwt
from fastapi import Query
from fastapi.testclient import TestClient

from chargenet.core.auth import ALGORITHM, CurrentPrincipal
from chargenet.core.http import rest_app

SECRET = "a-test-secret-of-at-least-32-bytes-long"


def client() -> TestClient:
    app = rest_app("test")
    app.state.jwt_secret = SECRET

    @app.get("/items")
    def items(limit: Annotated[int, Query(ge=1, le=100)] = 10) -> dict[str, int]:
        return {"limit": limit}

    @app.get("/me")
    def me(who: CurrentPrincipal) -> dict[str, str]:
        return {"subject": who.subject}

    return TestClient(app)


def test_a_value_fastapi_refuses_is_answered_in_the_services_error_shape() -> None:
    answer = client().get("/items", params={"limit": 1000})
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "unprocessable"
    assert body["detail"].startswith("query.limit: ") and "100" in body["detail"]
    assert body["errors"][0]["loc"] == ["query", "limit"]


def test_a_token_whose_role_is_no_text_is_unauthorized_not_a_server_error() -> None:
    for role in (["driver"], {"a": 1}, 7, None):
        token = jwt.encode({"sub": "x", "role": role}, SECRET, algorithm=ALGORITHM)
        answer = client().get("/me", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, (role, answer.text)
        assert answer.json()["error"] == "unauthorized"
