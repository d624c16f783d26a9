"""What every HTTP service shares: health and readiness, metrics, and one error-to-HTTP mapping."""

from __future__ import annotations

import gc
import json
import logging
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated

import sqlalchemy as sa
import uvicorn
from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from chargenet.core.errors import ChargenetError, Unprocessable, reasons
from chargenet.core.metrics import exposition

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], None]

#: A list route's ``offset``: OFFSET is a signed 64-bit integer in PostgreSQL and SQLite, and
#: beyond it the query failed (a 500).
Offset = Annotated[int, Query(ge=0, le=2**63 - 1)]


def ops_router(readiness_checks: dict[str, ReadinessCheck] | None = None) -> APIRouter:
    """``/healthz`` (the process lives), ``/readyz`` (its dependencies answer), ``/metrics``."""
    checks = readiness_checks or {}
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    def readyz() -> JSONResponse:
        failures: dict[str, str] = {}
        for name, check in checks.items():
            try:
                check()
            except Exception as error:
                failures[name] = f"{type(error).__name__}: {error}"
        if failures:
            return JSONResponse({"status": "unready", "failures": failures}, status_code=503)
        return JSONResponse({"status": "ready", "checks": sorted(checks)})

    @router.get("/metrics")
    def metrics() -> Response:
        body, content_type = exposition()
        return Response(content=body, media_type=content_type)

    return router


def install_error_handlers(app: FastAPI) -> None:
    """The one place domain errors become HTTP responses."""

    @app.exception_handler(ChargenetError)
    async def _domain_error(_request: Request, error: ChargenetError) -> JSONResponse:
        return JSONResponse(
            {"error": error.code, "detail": error.detail}, status_code=error.status_code
        )

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, error: HTTPException) -> JSONResponse:
        # The framework's own refusals (no such route, a body it cannot parse) in the one shape.
        return JSONResponse(
            {"error": _HTTP_CODES.get(error.status_code, "bad_request"), "detail": error.detail},
            status_code=error.status_code,
            headers=error.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own checks (a query value out of range, a body field of the wrong type) in
        # the same shape as every other error, the reason readable; the list stays for tools.
        # Without the input it echoed: what the client sent may not even encode (a lone
        # surrogate in a string made the answer itself fail, a 500).
        problems = [
            {key: value for key, value in problem.items() if key in _PROBLEM_KEYS}
            for problem in error.errors()
        ]
        return _AsciiJSONResponse(
            {
                "error": Unprocessable.code,
                "detail": reasons(problems) or "the request is not valid",
                "errors": jsonable_encoder(problems),
            },
            status_code=Unprocessable.status_code,
        )

    @app.exception_handler(sa.exc.DataError)
    async def _value_refused_by_the_database(_request: Request, error: Exception) -> JSONResponse:
        # A value the database cannot take (a NUL in a text, a number beyond its column) that
        # no check of the route caught. The routes check what they know; this keeps one they
        # missed a 422 instead of a 500. Its transaction rolls back (``Database.session``).
        # Only the driver's first line goes out: the rest is SQL and parameters.
        lines = str(getattr(error, "orig", "")).splitlines()
        reason = lines[0] if lines else "refused"
        log.warning("a request's value refused by the database: %s", reason)
        return _AsciiJSONResponse(
            {"error": Unprocessable.code, "detail": f"a value cannot be stored: {reason}"},
            status_code=Unprocessable.status_code,
        )


_PROBLEM_KEYS = frozenset({"type", "loc", "msg"})


class _AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: a field name the client sent (in ``loc``)
    may hold a lone surrogate, which UTF-8 cannot encode."""

    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


_HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "unprocessable",
}

#: The largest request body a REST service reads (413 above it). The largest legitimate one is
#: a station's OCPI location document, a few kB even with dozens of EVSEs; without a limit a
#: client could make a service read any amount into memory (and the registry keep it).
MAX_REQUEST_BODY_BYTES = 1 << 20

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def rest_app(title: str, lifespan: Lifespan | None = None) -> FastAPI:
    """A REST service's app: its request bodies bounded, its domain errors mapped to HTTP."""
    app = FastAPI(title=title, lifespan=lifespan, max_body_size=MAX_REQUEST_BODY_BYTES)
    install_error_handlers(app)
    return app


def ops_app(title: str, readiness_checks: dict[str, ReadinessCheck] | None = None) -> FastAPI:
    """An app with only the ops routes, for services whose API is not HTTP (signer, gateway)."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(ops_router(readiness_checks))
    return app


#: How long an idle keep-alive connection stays open. uvicorn's default, 5 s, equals httpx's
#: client default: a client reusing a connection at the moment the server closes it gets
#: "Server disconnected" on a POST it cannot retry (seen under load in bench/e2e.py). Longer
#: than the clients' and than a load balancer's idle timeout (60 s is common), the client or
#: the balancer always closes first.
KEEP_ALIVE_SECONDS = 75


#: The interpreter's recursion limit while a service serves requests. py_ecc, imported with web3,
#: raises it to 100,000 for its own use: a JSON body nested a few hundred thousand levels deep
#: (well inside the body limit) then overflowed the C stack in ``json.loads`` and crashed the
#: whole process. Within this limit such a body is refused (400) and nothing else recurses near it.
SERVING_RECURSION_LIMIT = 4000


def limit_recursion() -> None:
    """Bring the recursion limit back to a serving process's (see ``SERVING_RECURSION_LIMIT``);
    called where a process starts serving, after everything it needs is imported."""
    sys.setrecursionlimit(SERVING_RECURSION_LIMIT)


#: Allocations between young-generation collections while a service serves (Python's default is
#: 700): a request or an event allocates thousands of objects, most of which die with it.
GC_YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Take what a service set up before serving (modules, its app, its mappings: a few hundred
    thousand objects) out of the cyclic garbage collector's sight, and collect the young
    generation less often. Every full collection walked all of it again: 0.4 s of the wallet's
    CPU, once in each burst of 200 stops (bench/RESULTS.md, twentieth round)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def http_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server to run inside the service's own event loop (``await server.serve()``)."""
    limit_recursion()
    settle_heap()
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            http="httptools",  # a dependency: h11, the fallback, takes 1.5-2 times the CPU
        )
    )


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run the service's REST app until it is stopped (its own event loop)."""
    http_server(app, host, port).run()
