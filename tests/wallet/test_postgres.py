"""The wallet on PostgreSQL: accounts, a top-up repeated, a session request repeated, and a
request waiting for another replica's request of the same driver."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from chargenet.core.errors import Unprocessable
from chargenet.wallet.models import ChargingSession, Driver
from chargenet.wallet.sessions import SessionRequestBody, Sessions
from tests.wallet.harness import wait_for, world

EUR = 1_000_000


@pytest.mark.postgres
def test_wallet_on_postgres(postgres_database: str, tmp_path: Path) -> None:
    with world(tmp_path, wallet_database_url=postgres_database) as env:
        assert env.wallet_db.is_postgres
        driver = env.driver()
        assert env.login(driver.email, "wrong password!").status_code == 401
        first = env.top_up(driver, 12 * EUR, reference="pg-pay-1")
        again = env.top_up(driver, 12 * EUR, reference="pg-pay-1")
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.json()["mint_tx"] == first.json()["mint_tx"]
        assert env.deposit(driver.address) == 12 * EUR

        station = env.station()
        env.charge_point_online(station)
        headers = {**driver.headers, "Idempotency-Key": "pg-1"}
        body = {"station_id": station, "connector_id": "1", "max_amount": 8 * EUR}
        created = env.wallet.post("/v1/sessions", json=body, headers=headers)
        repeated = env.wallet.post("/v1/sessions", json=body, headers=headers)
        assert (created.status_code, repeated.status_code) == (201, 200), created.text
        assert created.json()["session_id"] == repeated.json()["session_id"]
        above = env.wallet.post(
            "/v1/sessions",
            json={**body, "max_amount": 4 * EUR + 1},
            headers={**driver.headers, "Idempotency-Key": "pg-2"},
        )
        assert above.status_code == 422
        relay = env.wallet.app.state.relay  # type: ignore[attr-defined]
        wait_for("outbox relayed", lambda: relay.pending() == 0)
        requested = [
            e
            for e in env.session_events(".requested.v1")
            if e.data["driver_id"] == driver.driver_id
        ]
        assert len(requested) == 1
        assert requested[0].subject == created.json()["session_id"]

        # Another replica deciding a request of this driver holds the driver's row: a request
        # here waits for it and then counts what it promised (here: the whole deposit).
        state: Any = env.wallet.app.state  # type: ignore[attr-defined]
        sessions: Sessions = state.sessions
        row = state.accounts.find(driver.driver_id)
        outcome: list[str] = []

        def go() -> None:
            body = SessionRequestBody(station_id=station, connector_id="1", max_amount=2 * EUR)
            try:
                sessions.request(row, "pg-3", body)
                outcome.append("created")
            except Unprocessable as error:
                outcome.append(error.detail)

        with env.wallet_db.session() as other:
            other.execute(
                sa.select(Driver).where(Driver.driver_id == driver.driver_id).with_for_update()
            )
            other.execute(
                sa.update(ChargingSession)
                .where(ChargingSession.session_id == created.json()["session_id"])
                .values(max_amount=12 * EUR)
            )
            thread = threading.Thread(target=go)
            thread.start()
            thread.join(timeout=1.0)
            assert thread.is_alive() and outcome == []  # waiting for the row
        thread.join(timeout=30)
        assert outcome == [
            f"max_amount: the maximum {2 * EUR} is above the available balance 0 (top up first)"
        ]
