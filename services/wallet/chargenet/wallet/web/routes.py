"""The driver app's pages: sign in, wallet and top-up, stations (map and list), start, live view,
stop, and history with CDR, settlement, invoice and signed meter data.

Pages render on the server; ``static/app.js`` only adds the live stream, the tile map when one
is configured, and "use my location". Everything works with the keyboard and without scripts
(the live view then refreshes itself).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from chargenet.core.errors import ChargenetError
from chargenet.core.web.numbers import NotANumber, typed_decimal
from chargenet.core.web.station_paths import ONE_SEGMENT, StationId, path_segment
from chargenet.wallet.api import driver_of, session_stream
from chargenet.wallet.sessions import FINAL_STATES
from chargenet.wallet.web import money
from chargenet.wallet.web.account import BILLING_FIELDS, COUNTRIES, country_name, invalid_field
from chargenet.wallet.web.backend import ApiError, Invoices, Stations, WalletApi
from chargenet.wallet.web.config import DriverAppConfig
from chargenet.wallet.web.cookies import SignedIn, forget, remember, signed_in
from chargenet.wallet.web.mapview import map_view
from chargenet.wallet.web.stations import CONNECTORS, POWERS, station_view

HERE = Path(__file__).parent
router = APIRouter(prefix="/app", include_in_schema=False)
#: Where a path segment is a station id (see chargenet.core.web.station_paths).
STATION_PREFIXES = ("/app/stations/",)
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)
templates.env.filters["path_segment"] = path_segment
NOTICES = {
    "welcome": "Your account is ready. Top up to start charging.",
    "signed-in": "You are signed in.",
    "topped-up": "Top-up received: the amount is in your wallet.",
    "topup-pending": "Top-up received: it shows in your balance in a moment.",
    "stopping": "Stopping: the charge point ends the session now.",
    "billing-saved": "Billing details saved: invoices of your next sessions use them.",
}
SEARCH_LIMIT = 50


class DriverApp:
    """What the pages share, kept on ``app.state.driver_app``."""

    def __init__(self, config: DriverAppConfig, api: WalletApi, currency: str) -> None:
        self.config = config
        self.api = api
        self.stations = Stations(config.registry)
        self.invoices = Invoices(config.invoicing)
        self.currency = currency


def _app(request: Request) -> DriverApp:
    web: DriverApp = request.app.state.driver_app
    return web


def _page(
    request: Request,
    name: str,
    signed: SignedIn | None,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    web = _app(request)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return templates.TemplateResponse(
        request,
        name,
        {
            "signed": signed,
            "currency": web.currency,
            "money": lambda units: money.show(units, web.currency),
            "notice": notice,
            "error": None,
            **context,
        },
        status_code=status,
    )


def _to_signin(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/app/signin?{urlencode({'next': target})}", status_code=303)


def _failed(request: Request, signed: SignedIn, failure: ApiError) -> Response:
    """The wallet API refused: a token it no longer accepts means signing in again, anything
    else is shown on the error page with the API's status and reason."""
    if failure.status == 401:
        return _to_signin(request)
    return _page(request, "error.html", signed, status=failure.status, error=failure.message)


def _safe_next(target: str | None) -> str:
    # Only paths of this app: an open redirect would make the sign-in page a phishing tool.
    if target and target.startswith("/app/") and not target.startswith("/app//"):
        return target
    return "/app/"


def _number(text: str, name: str, low: float, high: float) -> float:
    try:
        value = float(typed_decimal(text))
    except NotANumber:
        raise ValueError(f"{name}: {text!r} is not a number") from None
    if not low <= value <= high:
        raise ValueError(f"{name}: between {low:g} and {high:g}")
    return value


def _kwh(wh: int | None) -> str:
    return f"{(wh or 0) / 1000:.3f}"


# -- signing in ----------------------------------------------------------------------------------


@router.get("/signin")
async def signin_page(request: Request, next: str | None = None) -> Response:
    if signed_in(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _page(request, "signin.html", None, next=_safe_next(next))


@router.post("/signin")
async def signin(
    request: Request,
    email: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str | None, Form()] = None,
) -> Response:
    web = _app(request)
    try:
        issued = await web.api.sign_in(email.strip(), password)
    except ApiError as error:
        message = "Wrong e-mail address or password." if error.status == 401 else error.message
        return _page(
            request, "signin.html", None, status=error.status, error=message, next=_safe_next(next)
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    remember(
        response,
        issued["access_token"],
        int(issued["expires_in"]),
        secure=web.config.secure_cookies,
    )
    return response


@router.post("/signup")
async def signup(
    request: Request, email: Annotated[str, Form()], password: Annotated[str, Form()]
) -> Response:
    web = _app(request)
    try:
        await web.api.sign_up(email.strip(), password)
        issued = await web.api.sign_in(email.strip(), password)
    except ApiError as error:
        return _page(
            request, "signin.html", None, status=error.status, error=error.message, next="/app/"
        )
    response = RedirectResponse("/app/?notice=welcome", status_code=303)
    remember(
        response,
        issued["access_token"],
        int(issued["expires_in"]),
        secure=web.config.secure_cookies,
    )
    return response


@router.post("/signout")
async def signout(request: Request, csrf: Annotated[str | None, Form()] = None) -> Response:
    signed = signed_in(request)
    if signed is not None:
        signed.check(csrf)
    response = RedirectResponse("/app/signin", status_code=303)
    forget(response)
    return response


# -- wallet --------------------------------------------------------------------------------------


async def _home(
    request: Request, signed: SignedIn, *, status: int = 200, error: str | None = None
) -> Response:
    web = _app(request)
    try:
        wallet, listed = await asyncio.gather(
            web.api.get(signed.token, "/wallet"),
            web.api.get(signed.token, "/sessions", limit=20),
        )
    except ApiError as failure:
        return _failed(request, signed, failure)
    running = [s for s in listed["sessions"] if s["state"] not in FINAL_STATES]
    return _page(
        request,
        "home.html",
        signed,
        status=status,
        error=error,
        wallet=wallet,
        running=running,
        payment_reference=f"web-{uuid.uuid4().hex}",
    )


@router.get("/")
async def home(request: Request) -> Response:
    signed = signed_in(request)
    if signed is None:
        return _to_signin(request)
    return await _home(request, signed)


@router.post("/topup")
async def top_up(
    request: Request,
    amount: Annotated[str, Form()],
    payment_reference: Annotated[str, Form()],
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    signed = signed_in(request)
    if signed is None:
        return _to_signin(request)
    signed.check(csrf)
    web = _app(request)
    try:
        units = money.parse(amount, web.currency, field="Amount")
        result = await web.api.post(
            signed.token,
            "/wallet/topups",
            {"payment_reference": payment_reference, "amount": units},
        )
    except money.AmountError as error:
        return await _home(request, signed, status=422, error=str(error))
    except ApiError as error:
        return await _home(request, signed, status=error.status, error=error.message)
    notice = "topped-up" if result["status"] == "deposited" else "topup-pending"
    return RedirectResponse(f"/app/?notice={notice}", status_code=303)


# -- account and billing details ----------------------------------------------------------------


async def _account(
    request: Request,
    signed: SignedIn,
    *,
    status: int = 200,
    error: str | None = None,
    typed: dict[str, str] | None = None,
) -> Response:
    web = _app(request)
    try:
        profile, billing = await asyncio.gather(
            web.api.get(signed.token, "/me"), web.api.get(signed.token, "/me/billing")
        )
    except ApiError as failure:
        return _failed(request, signed, failure)
    return _page(
        request,
        "account.html",
        signed,
        status=status,
        profile=profile,
        # After a refused save the form shows what was typed, not what is stored.
        billing={**billing, **typed} if typed is not None else billing,
        billing_error=error,
        invalid=invalid_field(error),
        countries=COUNTRIES,
        country_name=country_name(billing["country"]),
    )


@router.get("/account")
async def account(request: Request) -> Response:
    signed = signed_in(request)
    if signed is None:
        return _to_signin(request)
    return await _account(request, signed)


@router.post("/account/billing")
async def save_billing(
    request: Request,
    country: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    street: Annotated[str, Form()] = "",
    postcode: Annotated[str, Form()] = "",
    city: Annotated[str, Form()] = "",
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    signed = signed_in(request)
    if signed is None:
        return _to_signin(request)
    signed.check(csrf)
    typed = dict(zip(BILLING_FIELDS, (name, street, postcode, city, country), strict=True))
    try:
        await _app(request).api.put(signed.token, "/me/billing", typed)
    except ApiError as error:
        return await _account(
            request, signed, status=error.status, error=error.message, typed=typed
        )
    return RedirectResponse("/app/account?notice=billing-saved", status_code=303)


# -- stations ------------------------------------------------------------------------------------


@router.get("/stations")
async def stations(
    request: Request,
    lat: str = "",
    lon: str = "",
    radius_km: str = "25",
    available: bool = False,
    connector: str = "",
    min_power: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    signed = signed_in(request)
    if signed is None:
        return _to_signin(request)
    web = _app(request)
    params: dict[str, Any] = {"limit": SEARCH_LIMIT}
    # The form's fields arrive as typed (empty when unused): checked here, so a typo gets a
    # sentence on the page instead of a validation error document.
    error = None
    near = None
    radius = 25.0
    try:
        radius = _number(radius_km, "Within (km)", 0.1, 500)
        latitude = _number(lat, "Latitude", -90, 90) if lat.strip() else None
        longitude = _number(lon, "Longitude", -180, 180) if lon.strip() else None
        if (latitude is None) != (longitude is None):
            raise ValueError("Near a place: give both latitude and longitude")
        if latitude is not None and longitude is not None:
            near = (latitude, longitude)
    except ValueError as problem:
        error = str(problem)
    if near is not None:
        params.update(lat=near[0], lon=near[1], radius_km=radius)
    if available:
        params["available_now"] = "true"
    if connector:
        params["connector_type"] = connector
    if min_power:
        params["min_power_w"] = min_power
    found: list[Any] = []
    total = 0
    try:
        if error is not None:
            raise ApiError(422, error)
        result = await web.stations.search(params)
        total = result["total"]
        details = await web.stations.details([s["station_id"] for s in result["stations"]])
        found = [
            station_view(d, s.get("distance_km"))
            for d, s in zip(details, result["stations"], strict=True)
        ]
    except ApiError as failure:
        error = failure.message if failure.status == 422 else f"Search failed: {failure.message}"
    return _page(
        request,
        "stations.html",
        signed,
        error=error,
        stations=found,
        total=total,
        map=map_view([s.point for s in found], near),
        map_points=[
            {
                "id": s.station_id,
                "name": s.name,
                "lat": s.latitude,
                "lon": s.longitude,
                "available": s.available > 0,
                "number": n,
            }
            for n, s in enumerate(found, start=1)
        ],
        tiles=web.config.tiles,
        filters={
            "lat": lat.strip(),
            "lon": lon.strip(),
            "radius_km": radius_km.strip() or "25",
            "available": available,
            "connector": connector,
            "min_power": min_power,
        },
        connectors=CONNECTORS,
        powers=POWERS,
    )


async def _station_page(
    request: Request, signed: SignedIn, station_id: str, *, status: int = 200, **extra: Any
) -> Response:
    web = _app(request)
    try:
        station = station_view(await web.stations.detail(station_id))
    except ApiError as failure:
        return _failed(request, signed, failure)
    return _page(
        request,
        "station.html",
        signed,
        status=status,
        station=station,
        chosen=next((c.value for c in station.connectors if c.available), None),
        idempotency_key=uuid.uuid4().hex,
        **extra,
    )


@router.get("/stations/{station_id}")
async def station(request: Request, station_id: StationId) -> Response:
    signed = signed_in(request)
    if signed is None:
        return _to_signin(request)
    return await _station_page(request, signed, station_id)


# After the station page: a path it did not take, e.g. a station id whose '/' was not encoded.
@router.get("/stations/{rest:path}")
async def unrouted_station(request: Request) -> Response:
    error = f"No such page: {ONE_SEGMENT}."
    return _page(request, "error.html", signed_in(request), status=404, error=error)


# -- sessions ------------------------------------------------------------------------------------


@router.post("/sessions")
async def start(
    request: Request,
    station_id: Annotated[str, Form()],
    connector: Annotated[str, Form()],
    max_amount: Annotated[str, Form()],
    idempotency_key: Annotated[str, Form()],
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    signed = signed_in(request)
    if signed is None:
        return _to_signin(request)
    signed.check(csrf)
    web = _app(request)
    evse_uid, _, connector_id = connector.partition("/")
    try:
        units = money.parse(max_amount, web.currency, field="Maximum")
        session = await web.api.post(
            signed.token,
            "/sessions",
            {
                "station_id": station_id,
                "evse_uid": evse_uid,
                "connector_id": connector_id,
                "max_amount": units,
            },
            key=idempotency_key,
        )
    except money.AmountError as error:
        return await _station_page(request, signed, station_id, status=422, error=str(error))
    except ApiError as error:
        return await _station_page(
            request, signed, station_id, status=error.status, error=error.message
        )
    return RedirectResponse(f"/app/sessions/{quote(session['session_id'])}", status_code=303)


@router.get("/sessions/{session_id}")
async def live(request: Request, session_id: str) -> Response:
    signed = signed_in(request)
    if signed is None:
        return _to_signin(request)
    web = _app(request)
    try:
        session = await web.api.get(signed.token, f"/sessions/{quote(session_id)}")
    except ApiError as failure:
        return _failed(request, signed, failure)
    return _page(
        request,
        "session.html",
        signed,
        session=session,
        final=session["state"] in FINAL_STATES,
        kwh=_kwh(session["energy_wh"]),
        remaining=max(session["max_amount"] - session["cost_so_far"], 0),
        places=money.minor_places(session["currency"]),
    )


@router.get("/sessions/{session_id}/stream")
async def stream(request: Request, session_id: str) -> Response:
    """The wallet's live stream (the same events as ``/v1/sessions/{id}/stream``) on the
    sign-in cookie, since a browser's EventSource cannot send an Authorization header."""
    signed = signed_in(request)
    if signed is None:
        return Response("sign in first", status_code=401, media_type="text/plain")
    sessions = request.app.state.sessions
    try:
        driver = await asyncio.to_thread(driver_of, request, signed.principal)
        row = await asyncio.to_thread(sessions.get, driver, session_id)
    except ChargenetError as error:
        return Response(error.detail, status_code=error.status_code, media_type="text/plain")
    return session_stream(request, sessions, driver, session_id, first=row)


@router.post("/sessions/{session_id}/stop")
async def stop(
    request: Request, session_id: str, csrf: Annotated[str | None, Form()] = None
) -> Response:
    signed = signed_in(request)
    if signed is None:
        return _to_signin(request)
    signed.check(csrf)
    web = _app(request)
    try:
        await web.api.post(signed.token, f"/sessions/{quote(session_id)}/stop")
    except ApiError as failure:
        return _failed(request, signed, failure)
    return RedirectResponse(f"/app/sessions/{quote(session_id)}?notice=stopping", status_code=303)


# -- history and invoices ------------------------------------------------------------------------


@router.get("/history")
async def history(request: Request) -> Response:
    signed = signed_in(request)
    if signed is None:
        return _to_signin(request)
    web = _app(request)
    try:
        listed = await web.api.get(signed.token, "/sessions", limit=50)
    except ApiError as failure:
        return _failed(request, signed, failure)
    sessions = listed["sessions"]
    error = None
    invoices: dict[str, dict[str, Any]] = {}
    try:
        invoices = await web.invoices.by_session(
            signed.token, {s["session_id"] for s in sessions if s["state"] == "settled"}
        )
    except ApiError as failure:
        error = f"Invoices are not available right now: {failure.message}"
    return _page(
        request,
        "history.html",
        signed,
        error=error,
        sessions=sessions,
        invoices=invoices,
        invoicing=web.invoices.configured,
        kwh=_kwh,
    )


@router.get("/invoices/{number}.pdf")
async def invoice_pdf(request: Request, number: str) -> Response:
    signed = signed_in(request)
    if signed is None:
        return _to_signin(request)
    try:
        pdf = await _app(request).invoices.pdf(signed.token, number)
    except ApiError as failure:
        return _failed(request, signed, failure)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{number}.pdf"'},
    )
