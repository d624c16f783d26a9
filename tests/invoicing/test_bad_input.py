"""Client input invoicing's API must refuse with a 4xx and a reason, never a 500: found by an
audit of its routes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chargenet.core.auth import Role
from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.db import Database
from tests.invoicing.test_api import SUPPLIERS, _app, auth


@pytest.fixture(params=["sqlite", "postgres"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    db: Database = request.getfixturevalue(f"{request.param}_db")
    suppliers = tmp_path / "suppliers.json"
    suppliers.write_text(SUPPLIERS)
    with _app(db, InMemoryBus(partitions=2), suppliers) as test_client:
        yield test_client


@pytest.mark.parametrize("route", ["/v1/invoices", "/v1/refused-settlements"])
def test_an_offset_beyond_the_databases_integers_is_refused(client: TestClient, route: str) -> None:
    """OFFSET is a signed 64-bit integer in both databases: from 2**63 on, a 500."""
    for offset in (2**63, 2**64):
        answer = client.get(route, params={"offset": offset}, headers=auth("CPO1", Role.CPO))
        assert answer.status_code == 422, (offset, answer.text)
    largest = client.get(route, params={"offset": 2**63 - 1}, headers=auth("CPO1", Role.CPO))
    assert largest.status_code == 200, largest.text


@pytest.mark.parametrize("suffix", ["", "/pdf", "/xml"])
def test_an_invoice_number_holding_a_nul_is_not_found(client: TestClient, suffix: str) -> None:
    """PostgreSQL cannot compare a text with a NUL in it: a 500."""
    answer = client.get(f"/v1/invoices/INV-CPO1%00{suffix}", headers=auth("CPO1", Role.CPO))
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"] == "not_found"
