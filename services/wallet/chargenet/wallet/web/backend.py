"""The REST APIs behind the pages: the wallet's own (in process), the registry's, invoicing's.

The pages call the wallet's public ``/v1`` API through an in-process ASGI transport with the
driver's token, so every rule (validation, balances, idempotency) is the API's and nothing is
implemented twice. Errors come back as ``ApiError`` with the message the API gave.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from chargenet.wallet.registry_client import station_path


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"the service answered {response.status_code}"
    detail = body.get("detail") if isinstance(body, dict) else None
    # Every service answers its errors as {"error", "detail"} (core.http), its own checks and
    # FastAPI's alike.
    if isinstance(detail, str):
        return detail
    return f"the service answered {response.status_code}"


def _json(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise ApiError(response.status_code, _message(response))
    return response.json()


async def _call(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Any:
    try:
        return _json(await client.request(method, url, **kwargs))
    except httpx.HTTPError as error:
        raise ApiError(503, f"the service did not answer ({type(error).__name__})") from None


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class WalletApi:
    """The wallet's ``/v1`` routes, called in process."""

    def __init__(self, app: FastAPI) -> None:
        self._http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://wallet.internal"
        )

    async def sign_in(self, email: str, password: str) -> dict[str, Any]:
        data = {"username": email, "password": password, "grant_type": "password"}
        result: dict[str, Any] = await _call(self._http, "POST", "/v1/auth/token", data=data)
        return result

    async def sign_up(self, email: str, password: str) -> dict[str, Any]:
        body = {"email": email, "password": password}
        result: dict[str, Any] = await _call(self._http, "POST", "/v1/accounts", json=body)
        return result

    async def get(self, token: str, path: str, **params: Any) -> Any:
        return await _call(self._http, "GET", f"/v1{path}", headers=_bearer(token), params=params)

    async def post(
        self, token: str, path: str, body: dict[str, Any] | None = None, key: str | None = None
    ) -> Any:
        headers = _bearer(token)
        if key is not None:
            headers["Idempotency-Key"] = key
        return await _call(self._http, "POST", f"/v1{path}", headers=headers, json=body)

    async def put(self, token: str, path: str, body: dict[str, Any]) -> Any:
        return await _call(self._http, "PUT", f"/v1{path}", headers=_bearer(token), json=body)


class Stations:
    """The registry's public station search and detail."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def search(self, params: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await _call(self._http, "GET", "/v1/stations", params=params)
        return result

    async def detail(self, station_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await _call(self._http, "GET", station_path(station_id))
        return result

    async def details(self, station_ids: list[str]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self.detail(s) for s in station_ids)))


class Invoices:
    """Invoicing's REST for the driver, with the driver's own token (it only shows theirs)."""

    def __init__(self, http: httpx.AsyncClient | None) -> None:
        self._http = http

    @property
    def configured(self) -> bool:
        return self._http is not None

    async def by_session(self, token: str, session_ids: set[str]) -> dict[str, dict[str, Any]]:
        """The invoice documents of these sessions (those that have one), by session id."""
        if self._http is None or not session_ids:
            return {}
        listed = await _call(
            self._http, "GET", "/v1/invoices", headers=_bearer(token), params={"limit": 500}
        )
        numbers = [i["number"] for i in listed["invoices"] if i["session_id"] in session_ids]
        documents = await asyncio.gather(
            *(
                _call(self._http, "GET", f"/v1/invoices/{n}", headers=_bearer(token))
                for n in numbers
            )
        )
        return {d["session_id"]: d for d in documents}

    async def pdf(self, token: str, number: str) -> bytes:
        if self._http is None:
            raise ApiError(404, "invoices are not available here")
        try:
            response = await self._http.get(f"/v1/invoices/{number}/pdf", headers=_bearer(token))
        except httpx.HTTPError as error:
            raise ApiError(503, f"invoicing did not answer ({type(error).__name__})") from None
        if response.status_code >= 400:
            raise ApiError(response.status_code, _message(response))
        return response.content
