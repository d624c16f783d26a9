"""The network from the outside: a CPO and drivers using the REST APIs, charge points on OCPP.

Used by the demo, the end-to-end tests and the benchmark against either way of running (only the
:class:`~chargenet.cli.network.embedded.Endpoints` differ).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from chargenet.cli.network.embedded import Endpoints
from chargenet.cli.network.fleet import ChargingProfile, Listener, SimStation, meter_for
from chargenet.cli.network.plan import CP_PASSWORD, Cpo
from chargenet.core.auth import Role, issue_token
from chargenet.core.ocpp_sim import Endpoint
from chargenet.core.settings import DEVELOPMENT_SECRET
from chargenet.core.web.station_paths import path_segment

T = TypeVar("T")
#: Where a session ends. ``cancelled`` is not among them: the escrow's cancel is followed by the
#: refund of the whole lock on chain, and only that ends the session.
FINAL_STATES = ("settled", "refunded", "failed")


class NetworkError(RuntimeError):
    """The network answered something a step cannot go on with; the message says what."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status of the answer, when there was one.
        self.status = status


async def eventually(
    what: str, probe: Callable[[], Awaitable[T | None]], within: float, every: float = 0.1
) -> T:
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise NetworkError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(every)


#: Per-read and connect timeouts, as httpx's were: a session's event stream stays open for as
#: long as the session charges, so there is no timeout on the whole request.
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=60, sock_read=60)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer read whole (status and body), to check after the connection is back."""

    method: str
    path: str
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def expect(self, *expected: int) -> Answer:
        """This answer if its status is one of ``expected``, else a NetworkError saying why."""
        if self.status not in expected:
            raise NetworkError(
                f"{self.method} {self.path} answered {self.status}: {self.text[:300]}",
                self.status,
            )
        return self

    def ok(self, *expected: int) -> dict[str, Any]:
        """The JSON body of an answer with one of the ``expected`` statuses."""
        self.expect(*expected)
        data: dict[str, Any] = self.json() if self.body else {}
        return data


class Service:
    """One service's REST API over its own connections. aiohttp, not httpx: the simulated
    drivers share the machine with the stack they drive, and httpx spent about four times
    aiohttp's CPU a request (`bench/requests_cpu.py`; bench/RESULTS.md, twenty-third round).
    The session is made on first use, inside the event loop that uses it."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(base_url=self.base_url, timeout=TIMEOUT)
        return self._http

    async def call(self, method: str, path: str, **options: Any) -> Answer:
        async with self.http.request(method, path, **options) as response:
            return Answer(method, path, response.status, await response.read())

    async def get(self, path: str, **options: Any) -> Answer:
        return await self.call("GET", path, **options)

    async def post(self, path: str, **options: Any) -> Answer:
        return await self.call("POST", path, **options)

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()


@dataclass
class Driver:
    email: str
    driver_id: str
    address: str
    id_token: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class NetworkClient:
    """Async REST calls against a running network; one :class:`Service` per service."""

    def __init__(self, endpoints: Endpoints, jwt_secret: str = DEVELOPMENT_SECRET) -> None:
        self.endpoints = endpoints
        self.jwt_secret = jwt_secret
        self.wallet = Service(endpoints.wallet)
        self.registry = Service(endpoints.registry)
        self.invoicing = Service(endpoints.invoicing)
        self._phones: dict[str, Service] = {}
        #: Session watches whose stream failed or ended early, so they polled (see SessionWatch).
        self.stream_fallbacks = 0

    def phone(self, driver: Driver) -> Service:
        """The driver's own connections to the wallet, as each driver's app has. One pool for
        hundreds of drivers, each holding a session's event stream open, cost the simulated
        drivers most of their CPU: httpx looked over every connection of its pool at each
        request and response."""
        phone = self._phones.get(driver.driver_id)
        if phone is None:
            phone = Service(self.endpoints.wallet)
            self._phones[driver.driver_id] = phone
        return phone

    async def aclose(self) -> None:
        phones, self._phones = list(self._phones.values()), {}
        for client in (self.wallet, self.registry, self.invoicing, *phones):
            await client.aclose()

    # -- CPOs and stations -----------------------------------------------------------------------
    def cpo_headers(self, cpo_id: str) -> dict[str, str]:
        token = issue_token(cpo_id, Role.CPO, self.jwt_secret)
        return {"Authorization": f"Bearer {token}"}

    async def register_station(
        self, cpo: Cpo, charge_point_id: str, index: int, meter_seed: str
    ) -> str:
        """Through the registry's CPO API (the signer sends it on chain); waits until indexed."""
        station_id = cpo.station_id(charge_point_id)
        body = {
            "station_id": station_id,
            "location": cpo.location(charge_point_id, index),
            "tariff": cpo.tariff,
            "meter_key_hash": meter_for(meter_seed, charge_point_id).key_hash,
        }
        answer = await self.registry.post(
            "/v1/cpo/stations", json=body, headers=self.cpo_headers(cpo.cpo_id)
        )
        # A second run against the same network finds its stations there already.
        if not (answer.status == 409 and "already registered" in answer.text):
            answer.ok(202)

        async def indexed() -> bool:
            return (
                await self.registry.get(f"/v1/stations/{path_segment(station_id)}")
            ).status == 200

        await eventually(f"station {station_id} indexed", indexed, 60)
        return station_id

    async def connector(self, station_id: str) -> tuple[bool, str | None]:
        detail = (await self.registry.get(f"/v1/stations/{path_segment(station_id)}")).ok(200)
        location = detail.get("location") or {}
        points = location.get("charge_points") or [{}]
        evses = location.get("evses") or [{"connectors": [{}]}]
        return bool(points[0].get("online")), evses[0]["connectors"][0].get("status")

    async def wait_available(self, station_id: str) -> None:
        async def available() -> bool:
            return await self.connector(station_id) == (True, "Available")

        await eventually(f"{station_id} online and Available", available, 60)

    # -- drivers ---------------------------------------------------------------------------------
    async def driver(self, email: str | None = None, password: str | None = None) -> Driver:
        """A new driver account (the wallet creates its custodial key) and its bearer token."""
        email = email or f"{uuid.uuid4().hex[:12]}@example.org"
        password = password or f"pw-{uuid.uuid4().hex}"
        account = {"email": email, "password": password}
        created = (await self.wallet.post("/v1/accounts", json=account)).ok(201)
        login = {"username": email, "password": password, "grant_type": "password"}
        token = (await self.wallet.post("/v1/auth/token", data=login)).ok(200)["access_token"]
        return Driver(email, created["driver_id"], created["address"], created["id_token"], token)

    async def top_up(self, driver: Driver, amount: int) -> dict[str, Any]:
        """A card payment turned into tokens in the driver's escrow deposit; waits until there."""
        answer = await self.phone(driver).post(
            "/v1/wallet/topups",
            json={"payment_reference": f"pay-{uuid.uuid4().hex}", "amount": amount},
            headers=driver.headers,
        )
        answer.ok(200, 201, 202)

        async def deposited() -> dict[str, Any] | None:
            wallet = await self.balance(driver)
            return wallet if wallet["deposit"] >= amount else None

        return await eventually(f"top-up of {driver.email}", deposited, 90)

    async def balance(self, driver: Driver) -> dict[str, Any]:
        return (await self.phone(driver).get("/v1/wallet", headers=driver.headers)).ok(200)

    # -- sessions --------------------------------------------------------------------------------
    async def request_session(self, driver: Driver, station_id: str, max_amount: int) -> str:
        answer = await self.phone(driver).post(
            "/v1/sessions",
            json={"station_id": station_id, "connector_id": "1", "max_amount": max_amount},
            headers={**driver.headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        return str(answer.ok(201)["session_id"])

    async def session(self, driver: Driver, session_id: str) -> dict[str, Any]:
        answer = await self.phone(driver).get(f"/v1/sessions/{session_id}", headers=driver.headers)
        return answer.ok(200)

    async def stop_session(self, driver: Driver, session_id: str) -> dict[str, Any]:
        phone = self.phone(driver)
        answer = await phone.post(f"/v1/sessions/{session_id}/stop", headers=driver.headers)
        return answer.ok(202)

    async def wait_state(
        self, driver: Driver, session_id: str, states: tuple[str, ...], within: float = 90
    ) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            view = await self.session(driver, session_id)
            return view if view["state"] in states else None

        return await eventually(f"session {session_id} {'/'.join(states)}", reached, within)

    def watch(self, driver: Driver, session_id: str) -> SessionWatch:
        """The session as the driver app sees it: its event stream (``async with``)."""
        return SessionWatch(self, driver, session_id)

    # -- invoices --------------------------------------------------------------------------------
    async def invoices(self, headers: dict[str, str]) -> list[dict[str, Any]]:
        listed = (await self.invoicing.get("/v1/invoices", headers=headers)).ok(200)
        invoices: list[dict[str, Any]] = listed["invoices"]
        return invoices

    async def invoice(self, headers: dict[str, str], number: str) -> dict[str, Any]:
        """The invoice's machine-readable document."""
        return (await self.invoicing.get(f"/v1/invoices/{number}", headers=headers)).ok(200)

    async def invoice_pdf(self, headers: dict[str, str], number: str) -> bytes:
        answer = await self.invoicing.get(f"/v1/invoices/{number}/pdf", headers=headers)
        return answer.expect(200).body

    async def metrics(self, service: str) -> str:
        url = self.endpoints.metrics.get(service)
        if url is None:
            raise NetworkError(f"no metrics endpoint known for {service}")
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            http.get(url) as answer,
        ):
            answer.raise_for_status()
            return await answer.text()


class SessionWatch:
    """A session's views from the wallet's Server-Sent Events stream, as the driver app gets
    them; if the stream fails or ends early, ``until`` goes on by polling the session."""

    def __init__(self, client: NetworkClient, driver: Driver, session_id: str) -> None:
        self._client = client
        self._driver = driver
        self._session_id = session_id
        self._response: aiohttp.ClientResponse | None = None
        self._views: AsyncGenerator[dict[str, Any], None] | None = None

    async def __aenter__(self) -> SessionWatch:
        phone = self._client.phone(self._driver)
        path = f"/v1/sessions/{self._session_id}/stream"
        try:
            response = await phone.http.get(path, headers=self._driver.headers)
        except aiohttp.ClientError:
            return self  # no stream: ``until`` polls
        self._response = response
        if response.status == 200:
            self._views = _session_events(response)
        else:
            await self._close()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._close()

    async def until(self, states: tuple[str, ...], within: float = 90) -> dict[str, Any]:
        """The first view in one of ``states`` (the stream's, else a poll's)."""
        deadline = time.monotonic() + within
        while self._views is not None:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    view = await anext(self._views)
            # First: aiohttp's read timeout is a TimeoutError too, and a stalled stream polls.
            except (aiohttp.ClientError, StopAsyncIteration):
                await self._close()  # the stream failed or ended: poll for the rest
                break
            except TimeoutError:
                raise NetworkError(
                    f"timed out after {within:.0f} s waiting for session {self._session_id} "
                    f"{'/'.join(states)}"
                ) from None
            if view["state"] in states:
                return view
        self._client.stream_fallbacks += 1
        remaining = max(1.0, deadline - time.monotonic())
        return await self._client.wait_state(self._driver, self._session_id, states, remaining)

    async def _close(self) -> None:
        views, self._views = self._views, None
        if views is not None:
            with contextlib.suppress(aiohttp.ClientError):
                await views.aclose()
        response, self._response = self._response, None
        if response is not None:
            # Read to its end, the connection goes back to the driver's pool; else it closes.
            response.release()


async def _session_events(
    response: aiohttp.ClientResponse,
) -> AsyncGenerator[dict[str, Any], None]:
    """The ``session`` events' views; ends with the stream (the wallet ends it when final)."""
    kind, data = "", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event:"):
            kind = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data = line.removeprefix("data:").strip()
        elif line == "":
            if kind == "session" and data:
                yield json.loads(data)
            kind, data = "", ""


def station_for(
    cpo: Cpo,
    charge_point_id: str,
    url: str,
    meter_seed: str,
    *,
    profile: ChargingProfile | None = None,
    reject_start: bool = False,
    listener: Listener | None = None,
    check_messages: bool = True,
) -> SimStation:
    return SimStation(
        charge_point_id=charge_point_id,
        version=cpo.ocpp_version,
        endpoint=Endpoint(url, password=CP_PASSWORD),
        meter=meter_for(meter_seed, charge_point_id),
        profile=profile or ChargingProfile(power_w=cpo.power_w),
        reject_start=reject_start,
        listener=listener,
        check_messages=check_messages,
    )


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric's samples whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for line in exposition.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total
