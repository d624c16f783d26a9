"""Service routes: an untyped dict answer is encoded on the loop, a typed one still validated."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from chargenet.core.http import api_router


class Answer(BaseModel):
    count: int


def _app() -> tuple[FastAPI, dict[str, APIRoute]]:
    router = api_router(prefix="/v1")

    @router.get("/plain")
    def plain() -> dict[str, Any]:
        return {"count": 1, "nested": {"ok": True}}

    @router.get("/typed")
    def typed() -> Answer:
        return Answer(count=2)

    @router.get("/declared", response_model=Answer)
    def declared() -> dict[str, Any]:
        return {"count": "3", "dropped": True}

    app = FastAPI()
    app.include_router(router)
    return app, {r.path: r for r in router.routes if isinstance(r, APIRoute)}


def test_an_untyped_dict_answer_has_no_response_model_and_is_sent_as_it_is() -> None:
    app, routes = _app()
    assert routes["/v1/plain"].response_field is None
    with TestClient(app) as client:
        assert client.get("/v1/plain").json() == {"count": 1, "nested": {"ok": True}}


def test_a_typed_answer_and_a_declared_model_are_still_validated() -> None:
    app, routes = _app()
    assert routes["/v1/typed"].response_field is not None
    assert routes["/v1/declared"].response_field is not None
    with TestClient(app) as client:
        assert client.get("/v1/typed").json() == {"count": 2}
        # The declared model coerces and filters, as FastAPI does.
        assert client.get("/v1/declared").json() == {"count": 3}
