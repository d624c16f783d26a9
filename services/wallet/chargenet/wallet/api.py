"""REST for drivers: accounts, tokens, the wallet (balance, history, top-up, payout), sessions."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from chargenet.core.aio import wait_event
from chargenet.core.auth import Principal, Role
from chargenet.core.errors import Forbidden, NotFound, Unauthorized
from chargenet.core.http import Offset
from chargenet.wallet.accounts import Accounts
from chargenet.wallet.auth import CurrentPrincipal, TokenAuthority
from chargenet.wallet.billing import Billing, BillingBody
from chargenet.wallet.chain import ChainReader
from chargenet.wallet.funds import Funds, TokenAmount, promised
from chargenet.wallet.models import ChargingSession, Driver, Payout, TopUp
from chargenet.wallet.sessions import FINAL_STATES, SessionRequestBody, Sessions, view
from chargenet.wallet.signals import SessionSignals

router = APIRouter(prefix="/v1", tags=["wallet"])
#: The driver id column's width: a token's subject is the driver's id.
MAX_SUBJECT = 200


class AccountBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class TopUpBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_reference: str = Field(min_length=1, max_length=120)
    amount: TokenAmount


class PayoutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payout_reference: str = Field(min_length=1, max_length=120)
    amount: TokenAmount


def _state(request: Request, name: str) -> Any:
    return getattr(request.app.state, name)


def _check_principal(who: Principal) -> None:
    if who.role is not Role.DRIVER:
        raise Forbidden("only a driver token may use the wallet")
    if "\0" in who.subject or len(who.subject) > MAX_SUBJECT:
        # No account can have it: PostgreSQL cannot compare a NUL, nor store a longer id (500).
        raise Unauthorized(f"invalid token: sub must be at most {MAX_SUBJECT} characters, no NUL")


async def current_driver(request: Request, who: CurrentPrincipal) -> Driver:
    """The token's driver. A driver looked up lately is answered on the event loop: a sync
    dependency is a hop to a worker thread and back for every request, which under a burst of
    requests cost more than the look-up itself (bench/RESULTS.md, twenty-first round)."""
    _check_principal(who)
    accounts: Accounts = _state(request, "accounts")
    if (cached := accounts.cached(who.subject)) is not None:
        return cached
    return await asyncio.to_thread(driver_of, request, who)


def driver_of(request: Request, who: Principal) -> Driver:
    """The token's driver, from the database (provisioned on first sight where the tokens come
    from an external identity provider)."""
    _check_principal(who)
    accounts: Accounts = _state(request, "accounts")
    tokens: TokenAuthority = _state(request, "tokens")
    driver = accounts.find(who.subject)
    if driver is None:
        if tokens.issues_tokens:
            raise Unauthorized("no account for this token")
        driver = accounts.provision(who.subject)
    return driver


CurrentDriver = Annotated[Driver, Depends(current_driver)]


def _profile(driver: Driver) -> dict[str, Any]:
    return {
        "driver_id": driver.driver_id,
        "email": driver.email,
        "address": driver.address,
        "id_token": driver.id_token,
    }


# -- accounts and tokens -------------------------------------------------------------------------


@router.post("/accounts", status_code=201)
def create_account(request: Request, body: AccountBody) -> dict[str, Any]:
    tokens: TokenAuthority = _state(request, "tokens")
    if not tokens.issues_tokens:
        raise Forbidden("accounts are created by the external identity provider")
    accounts: Accounts = _state(request, "accounts")
    return _profile(accounts.register(body.email, body.password))


@router.post("/auth/token")
def token(
    request: Request,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    grant_type: Annotated[str, Form(pattern="^password$")] = "password",
) -> dict[str, Any]:
    """OAuth2 resource owner password flow (``application/x-www-form-urlencoded``)."""
    tokens: TokenAuthority = _state(request, "tokens")
    accounts: Accounts = _state(request, "accounts")
    if not tokens.issues_tokens:
        raise Forbidden("tokens are issued by the external identity provider")
    driver = accounts.authenticate(username, password)
    issued = tokens.issue(driver.driver_id, Role.DRIVER)
    return {
        "access_token": issued.access_token,
        "token_type": "bearer",
        "expires_in": issued.expires_in,
    }


@router.get("/me")
def me(driver: CurrentDriver) -> dict[str, Any]:
    return _profile(driver)


@router.get("/me/billing")
def get_billing(request: Request, driver: CurrentDriver) -> dict[str, Any]:
    """Whom invoices are made out to; ``default``: none given, the default country applies."""
    billing: Billing = _state(request, "billing")
    return billing.get(driver.driver_id)


@router.put("/me/billing")
def set_billing(request: Request, driver: CurrentDriver, body: BillingBody) -> dict[str, Any]:
    """Set the billing details (for sessions requested from now on); 422 names a bad field."""
    billing: Billing = _state(request, "billing")
    return billing.set(driver.driver_id, body)


# -- wallet --------------------------------------------------------------------------------------


@router.get("/wallet")
def wallet(request: Request, driver: CurrentDriver) -> dict[str, Any]:
    chain: ChainReader = _state(request, "chain")
    balance = chain.balance(driver.address)
    pending = promised(_state(request, "db"), driver.driver_id)
    return {
        "address": driver.address,
        "currency": _state(request, "settings").wallet_currency,
        "token_balance": balance.token,
        "deposit": balance.deposit,
        "total": balance.total,
        "pending_sessions": pending,
        "available": balance.total - pending,
        "block": balance.block,
    }


@router.get("/wallet/history")
def history(
    request: Request,
    driver: CurrentDriver,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    chain: ChainReader = _state(request, "chain")
    entries = chain.history(driver.address, _state(request, "settings").wallet_start_block)
    newest = list(reversed(entries))[:limit]
    return {
        "address": driver.address,
        "entries": [
            {
                "block": e.block,
                "log_index": e.log_index,
                "tx_hash": e.tx_hash,
                "contract": e.contract,
                "event": e.event,
                "args": e.args,
            }
            for e in newest
        ],
    }


def _topup(row: TopUp) -> dict[str, Any]:
    return {
        "payment_reference": row.payment_reference,
        "amount": row.amount,
        "status": row.status,
        "mint_tx": row.mint_tx,
        "deposit_tx": row.deposit_tx,
        "error": row.error,
    }


@router.post("/wallet/topups")
def top_up(
    request: Request, response: Response, driver: CurrentDriver, body: TopUpBody
) -> dict[str, Any]:
    funds: Funds = _state(request, "funds")
    row = funds.top_up(driver, body.payment_reference, body.amount)
    response.status_code = 201 if row.status == "deposited" else 202
    if row.status == "failed":
        response.status_code = 502
    return _topup(row)


@router.get("/wallet/topups/{reference}")
def get_top_up(request: Request, driver: CurrentDriver, reference: str) -> dict[str, Any]:
    funds: Funds = _state(request, "funds")
    row = funds.find_topup(reference)
    if row is None or row.driver_id != driver.driver_id:
        raise NotFound(f"no top-up {reference}")
    return _topup(row)


def _payout(row: Payout) -> dict[str, Any]:
    return {
        "payout_reference": row.payout_reference,
        "amount": row.amount,
        "status": row.status,
        "burn_tx": row.burn_tx,
        "error": row.error,
    }


@router.post("/wallet/payouts")
def pay_out(
    request: Request, response: Response, driver: CurrentDriver, body: PayoutBody
) -> dict[str, Any]:
    funds: Funds = _state(request, "funds")
    row = funds.pay_out(driver, body.payout_reference, body.amount)
    response.status_code = {"paid": 201, "failed": 502}.get(row.status, 202)
    return _payout(row)


# -- sessions ------------------------------------------------------------------------------------


@router.post("/sessions")
def request_session(
    request: Request,
    response: Response,
    driver: CurrentDriver,
    body: SessionRequestBody,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, Any]:
    sessions: Sessions = _state(request, "sessions")
    row, created = sessions.request(driver, idempotency_key, body)
    response.status_code = 201 if created else 200
    return view(row)


@router.get("/sessions")
def list_sessions(
    request: Request,
    driver: CurrentDriver,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> dict[str, Any]:
    sessions: Sessions = _state(request, "sessions")
    rows = sessions.list(driver, limit, offset)
    return {"sessions": [view(row) for row in rows], "limit": limit, "offset": offset}


@router.get("/sessions/{session_id}")
def get_session(request: Request, driver: CurrentDriver, session_id: str) -> dict[str, Any]:
    sessions: Sessions = _state(request, "sessions")
    return view(sessions.get(driver, session_id))


@router.post("/sessions/{session_id}/stop", status_code=202)
async def stop_session(request: Request, driver: CurrentDriver, session_id: str) -> dict[str, Any]:
    # Async: the stop waits on the loop for its group commit, not in a worker thread of its own.
    sessions: Sessions = _state(request, "sessions")
    return view(await asyncio.wrap_future(sessions.stop(driver, session_id)))


@router.get("/sessions/{session_id}/stream")
def stream_session(request: Request, driver: CurrentDriver, session_id: str) -> StreamingResponse:
    """Server-Sent Events: the session's view on every change, until it is final."""
    sessions: Sessions = _state(request, "sessions")
    row = sessions.get(driver, session_id)  # 404 / 403 before the stream starts
    return session_stream(request, sessions, driver, session_id, first=row)


def session_stream(
    request: Request,
    sessions: Sessions,
    driver: Driver,
    session_id: str,
    *,
    first: ChargingSession | None = None,
) -> StreamingResponse:
    """The session's Server-Sent Events (REST and the driver app's cookie-signed page alike).
    ``first``: the row as the caller just read it, sent first instead of read again (a change
    committed before the stream watches the session reaches it by the signals' version poll)."""
    settings = _state(request, "settings")
    return StreamingResponse(
        _events(
            sessions,
            _state(request, "signals"),
            driver,
            session_id,
            settings.wallet_stream_keepalive_seconds,
            first,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    sessions: Sessions,
    signals: SessionSignals,
    driver: Driver,
    session_id: str,
    keepalive: float,
    first: ChargingSession | None = None,
) -> AsyncIterator[str]:
    # The row (its version) is what is sent: any replica's consumer may have applied the event,
    # and the database is where they all meet. The row is read again when the signals say it
    # changed (see chargenet.wallet.signals), and at least every keep-alive interval.
    # A driver who leaves ends the stream from outside: the streaming response listens for the
    # disconnect and cancels it (or, on servers that do not send one, the next send fails).
    # Asking ``request.is_disconnected()`` on every change cost some 40 % of the stream's CPU.
    sent = -1
    quiet_since = time.monotonic()
    with signals.watch(session_id) as changed:
        while True:
            changed.clear()
            row = signals.latest(session_id)
            if row is None or row.version <= sent:
                if first is not None:
                    row = first
                else:
                    row = await asyncio.to_thread(sessions.get, driver, session_id)
            first = None  # only ever the first row: it is older than anything read after it
            signals.seen(session_id, row.version)
            if row.version > sent:
                sent = row.version
                quiet_since = time.monotonic()
                yield f"id: {row.version}\nevent: session\ndata: {json.dumps(view(row))}\n\n"
            if row.state in FINAL_STATES:
                yield "event: end\ndata: {}\n\n"
                return
            if time.monotonic() - quiet_since >= keepalive:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            await wait_event(changed, keepalive)
