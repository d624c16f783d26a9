"""The CPO console's pages: stations with live connector status, sessions running now, settled
revenue per day, invoices, and station registration and update.

Stations, live status and open escrow sessions come from the registry's own index; revenue and
invoices from invoicing's REST with the CPO's own token; registration and updates go through the
registry's CPO API (in process, so its validation and the signer's chain transaction are the
same as for any API caller).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import jinja2
import sqlalchemy as sa
from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from chargenet.core.errors import ChargenetError
from chargenet.core.pricing.money import TOKEN_DECIMALS, minor_unit, round_half_up
from chargenet.core.web.station_paths import ONE_SEGMENT, StationId, path_segment
from chargenet.registry.console.chart import per_day, revenue_chart
from chargenet.registry.console.forms import STANDARDS, FormError, StationForm, documents, prefill
from chargenet.registry.console.session import COOKIE, PATH, Operator, operator, verify
from chargenet.registry.cpo import ChainWriter
from chargenet.registry.models import EscrowSession, Station
from chargenet.registry.query import Filters, detail, search

HERE = Path(__file__).parent
router = APIRouter(prefix="/console", include_in_schema=False)
#: Where a path segment is a station id (see chargenet.core.web.station_paths).
CONSOLE_STATION_PREFIXES = ("/console/stations/",)
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)
templates.env.filters["path_segment"] = path_segment
NOTICES = {
    "submitted": "Sent on chain: the station shows here once the transaction is confirmed "
    "and indexed (usually seconds).",
}
MAX_STATIONS = 100


class Console:
    """What the pages share, kept on ``app.state.console``."""

    def __init__(self, app: Any, invoicing: httpx.AsyncClient | None, secure: bool) -> None:
        self.api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://registry.internal"
        )
        self.invoicing = invoicing
        self.secure_cookies = secure

    async def aclose(self) -> None:
        """Close the clients (the invoicing one pools connections), on the loop that used them."""
        await self.api.aclose()
        if self.invoicing is not None:
            await self.invoicing.aclose()


def show(units: int | None, currency: str) -> str:
    if units is None:
        return "\u2013"  # an en dash: no amount
    places = minor_unit(currency)
    amount = round_half_up(Decimal(units).scaleb(-TOKEN_DECIMALS), places)
    return f"{amount:,.{places}f} {currency}"


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _page(
    request: Request, name: str, who: Operator | None, *, status: int = 200, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        name,
        {
            "who": who,
            "notice": NOTICES.get(request.query_params.get("notice", "")),
            "error": None,
            "show": show,
            **context,
        },
        status_code=status,
    )


def _signin() -> RedirectResponse:
    return RedirectResponse("/console/signin", status_code=303)


def _address(request: Request, who: Operator) -> str | None:
    writer: ChainWriter | None = request.app.state.writer
    return writer.address_of(who.cpo_id) if writer is not None else None


def _stations(request: Request, address: str) -> list[dict[str, Any]]:
    with request.app.state.db.session() as session:
        _total, page = search(
            session,
            Filters(cpo_address=address, include_retired=True),
            limit=MAX_STATIONS,
            offset=0,
            sort="id",
        )
        return [detail(session, station) for station, _km in page]


def _running(request: Request, station_ids: list[str]) -> list[dict[str, Any]]:
    """Escrow sessions open on chain at these stations, newest first."""
    if not station_ids:
        return []
    with request.app.state.db.session() as session:
        rows = session.scalars(
            sa.select(EscrowSession)
            .where(EscrowSession.station_id.in_(station_ids), EscrowSession.closed_block.is_(None))
            .order_by(EscrowSession.opened_block.desc())
        ).all()
        return [
            {"session_id": r.session_id, "station_id": r.station_id, "opened_block": r.opened_block}
            for r in rows
        ]


# -- signing in ----------------------------------------------------------------------------------


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    return _page(request, "signin.html", None)


@router.post("/signin")
async def signin(request: Request, token: Annotated[str, Form()]) -> Response:
    try:
        who = verify(request, token.strip())
    except ChargenetError as error:
        return _page(request, "signin.html", None, status=401, error=error.detail)
    response = RedirectResponse("/console/", status_code=303)
    response.set_cookie(
        COOKIE,
        who.token,
        path=PATH,
        httponly=True,
        samesite="lax",
        secure=_console(request).secure_cookies,
    )
    return response


@router.post("/signout")
async def signout(request: Request, csrf: Annotated[str | None, Form()] = None) -> Response:
    who = operator(request)
    if who is not None:
        who.check(csrf)
    response = RedirectResponse("/console/signin", status_code=303)
    response.delete_cookie(COOKIE, path=PATH)
    return response


# -- stations and sessions -----------------------------------------------------------------------


@router.get("/")
async def overview(request: Request) -> Response:
    who = operator(request)
    if who is None:
        return _signin()
    try:
        address = await asyncio.to_thread(_address, request, who)
    except ChargenetError as error:
        return _page(request, "error.html", who, status=error.status_code, error=error.detail)
    stations = await asyncio.to_thread(_stations, request, address) if address else []
    running = await asyncio.to_thread(
        _running, request, [s["station_id"] for s in stations if s["active"]]
    )
    charging = [
        (s, c)
        for s in stations
        for evse in (s.get("location") or {}).get("evses", [])
        for c in evse["connectors"]
        if c.get("status") in ("Charging", "Occupied", "SuspendedEV", "SuspendedEVSE")
    ]
    return _page(
        request,
        "overview.html",
        who,
        address=address,
        stations=stations,
        running=running,
        charging=charging,
        page="overview",
    )


# -- revenue and invoices ------------------------------------------------------------------------


async def _invoices(console: Console, who: Operator) -> list[dict[str, Any]]:
    if console.invoicing is None:
        return []
    answer = await console.invoicing.get(
        "/v1/invoices", params={"limit": 500}, headers={"Authorization": f"Bearer {who.token}"}
    )
    if answer.status_code != 200:
        raise ChargenetError(f"invoicing answered {answer.status_code}")
    invoices: list[dict[str, Any]] = answer.json()["invoices"]
    return invoices


@router.get("/revenue")
async def revenue(request: Request) -> Response:
    who = operator(request)
    if who is None:
        return _signin()
    console = _console(request)
    error = None
    invoices: list[dict[str, Any]] = []
    try:
        invoices = await _invoices(console, who)
    except (ChargenetError, httpx.HTTPError) as failure:
        error = f"Invoices are not available right now: {failure}"
    currency = invoices[0]["currency"] if invoices else "EUR"
    totals = per_day(
        (date.fromisoformat(i["issue_date"]), int(i["total_incl_vat"]))
        for i in invoices
        if i["currency"] == currency
    )
    chart = revenue_chart(totals, datetime.now(UTC).date())
    return _page(
        request,
        "revenue.html",
        who,
        error=error,
        invoices=invoices,
        chart=chart,
        currency=currency,
        configured=console.invoicing is not None,
        page="revenue",
    )


@router.get("/invoices/{number}.pdf")
async def invoice_pdf(request: Request, number: str) -> Response:
    who = operator(request)
    if who is None:
        return _signin()
    console = _console(request)
    if console.invoicing is None:
        return _page(request, "error.html", who, status=404, error="invoicing is not connected")
    answer = await console.invoicing.get(
        f"/v1/invoices/{quote(number)}/pdf", headers={"Authorization": f"Bearer {who.token}"}
    )
    if answer.status_code != 200:
        return _page(
            request, "error.html", who, status=answer.status_code, error=f"no invoice {number}"
        )
    return Response(
        answer.content,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{number}.pdf"'},
    )


# -- registering and updating stations -----------------------------------------------------------


def _form_page(
    request: Request, who: Operator, form: StationForm, *, update: bool, status: int = 200
) -> HTMLResponse:
    return _page(
        request,
        "station_form.html",
        who,
        status=status,
        form=form,
        update=update,
        standards=STANDARDS,
        error="; ".join(form.errors) or None,
        page="register",
    )


@router.get("/stations/new")
async def new_station(request: Request) -> Response:
    who = operator(request)
    if who is None:
        return _signin()
    return _form_page(request, who, StationForm(), update=False)


@router.get("/stations/{station_id}/edit")
async def edit_station(request: Request, station_id: StationId) -> Response:
    who = operator(request)
    if who is None:
        return _signin()
    with request.app.state.db.session() as session:
        station = session.get(Station, station_id)
        if station is None:
            return _page(request, "error.html", who, status=404, error=f"no station {station_id}")
        form = prefill(detail(session, station))
    return _form_page(request, who, form, update=True)


async def _submit(request: Request, station_id: str | None) -> Response:
    """Register (``station_id`` None) or update the station the URL names."""
    who = operator(request)
    if who is None:
        return _signin()
    values = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    who.check(values.get("csrf"))
    form = StationForm.of(values)
    update = station_id is not None
    if station_id is not None:
        form.station_id = station_id  # the URL names the station, not a field one can edit
    try:
        body = documents(form)
    except FormError as error:
        form.errors.append(str(error))
        return _form_page(request, who, form, update=update, status=422)
    headers = {"Authorization": f"Bearer {who.token}"}
    api = _console(request).api
    if station_id is not None:
        body.pop("station_id")
        answer = await api.put(
            f"/v1/cpo/stations/{path_segment(station_id)}", json=body, headers=headers
        )
    else:
        answer = await api.post("/v1/cpo/stations", json=body, headers=headers)
    if answer.status_code != 202:
        detail_text = answer.json().get("detail", answer.text)
        form.errors.append(str(detail_text))
        return _form_page(request, who, form, update=update, status=answer.status_code)
    return RedirectResponse("/console/?notice=submitted", status_code=303)


@router.post("/stations")
async def register(request: Request) -> Response:
    return await _submit(request, None)


@router.post("/stations/{station_id}")
async def update(request: Request, station_id: StationId) -> Response:
    return await _submit(request, station_id)


# Last, after every station page: a path none of them took, e.g. an id whose '/' was not encoded.
@router.api_route("/stations/{rest:path}", methods=["GET", "POST"])
async def unrouted_station(request: Request) -> Response:
    error = f"No such page: {ONE_SEGMENT}."
    return _page(request, "error.html", operator(request), status=404, error=error)
