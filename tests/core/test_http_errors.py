"""Every REST service answers a client's mistake in one shape, ``{"error", "detail"}``, with a 4xx:
FastAPI's own request checks, a token that names no valid role, and a value the database refuses
that no route check caught included."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import jwt
import pytest
import sqlalchemy as sa
from fastapi import Query
from fastapi.testclient import TestClient

from chargenet.core.auth import ALGORITHM, CurrentPrincipal
from chargenet.core.db import Database
from chargenet.core.http import rest_app

SECRET = "a-test-secret-of-at-least-32-bytes-long"


def client() -> TestClient:
    app = rest_app("test")
    app.state.jwt_secret = SECRET

    @app.get("/items")
    def items(limit: Annotated[int, Query(ge=1, le=100)] = 10) -> dict[str, int]:
        return {"limit": limit}

    @app.post("/counts")
    def counts(body: dict[str, int]) -> dict[str, int]:
        return body

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


def test_a_json_body_nested_deeper_than_the_stack_is_refused_and_the_service_lives() -> None:
    """py_ecc (imported with web3) raises the recursion limit to 100,000; ``json.loads`` of a
    body nested 200,000 deep then overflowed the C stack and the whole process died. Run in its
    own process: the limit is the interpreter's."""
    script = """
import web3  # noqa: F401  (what raises the limit)
from fastapi.testclient import TestClient
from chargenet.core.http import http_server, rest_app

app = rest_app("test")

@app.post("/things")
def things(body: dict) -> dict:
    return body

http_server(app, "127.0.0.1", 0)  # where a service starts serving
client = TestClient(app)
deep = client.post("/things", content="[" * 200_000 + "]" * 200_000,
                   headers={"content-type": "application/json"})
print(deep.status_code, deep.json()["error"])
print(client.post("/things", json={"a": 1}).status_code)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["400", "bad_request", "200"], result.stdout


def test_the_frameworks_own_refusals_are_in_the_services_error_shape() -> None:
    answer = client().get("/nowhere")
    assert (answer.status_code, answer.json()["error"]) == (404, "not_found")
    answer = client().post("/items")
    assert (answer.status_code, answer.json()["error"]) == (405, "method_not_allowed")
    assert "GET" in answer.headers["allow"]


def test_a_refused_value_the_answer_cannot_encode_is_still_a_422() -> None:
    """A lone surrogate is valid JSON text but no UTF-8: echoed back, it made the 422 a 500."""
    answer = client().post(
        "/counts",
        content='{"\\ud800": "\\ud800"}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "unprocessable"
    assert "input" not in answer.json()["errors"][0]


@pytest.mark.postgres
def test_a_value_the_database_refuses_is_a_422_and_nothing_of_its_transaction_is_stored(
    postgres_database: str,
) -> None:
    """PostgreSQL takes no NUL in a text. A route that does not check for one (the routes check
    what they know) answered 500; the one mapping makes it a 422 with the database's reason."""
    db = Database(postgres_database)
    with db.session() as session:
        session.execute(sa.text("CREATE TABLE notes (body TEXT NOT NULL)"))
    app = rest_app("test")

    @app.post("/notes")
    def add(body: str) -> dict[str, int]:
        with db.session() as session:
            session.execute(sa.text("INSERT INTO notes VALUES ('first of two')"))
            session.execute(sa.text("INSERT INTO notes VALUES (:body)"), {"body": body})
            return {"stored": 2}

    def stored() -> int:
        with db.session() as session:
            return int(session.execute(sa.text("SELECT count(*) FROM notes")).scalar_one())

    try:
        with TestClient(app) as client:
            refused = client.post("/notes", params={"body": "a\x00b"})
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"] == "unprocessable"
            assert "NUL" in refused.json()["detail"] and "INSERT" not in refused.text
            assert stored() == 0
            assert client.post("/notes", params={"body": "fine"}).json() == {"stored": 2}
            assert stored() == 2
    finally:
        db.dispose()
