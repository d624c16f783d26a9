"""The invoicing service end to end: settled events on the bus in, REST out, each party its own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from chargenet.core.auth import Role, issue_token
from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.db import Database
from chargenet.core.envelope import Envelope
from chargenet.core.events import Topic
from chargenet.invoicing.events import SessionSettled
from chargenet.invoicing.main import create_app
from chargenet.invoicing.settings import InvoicingSettings

SECRET = "test-secret-with-at-least-32-bytes!!"
Factory = Callable[..., SessionSettled]
Wrap = Callable[..., Envelope]


@pytest.fixture
def bus() -> InMemoryBus:
    return InMemoryBus(partitions=2)


SUPPLIERS = (
    '{"CPO1": {"name": "Stromtankstelle Berlin GmbH", "street": "Invalidenstr. 117",'
    ' "postcode": "10115", "city": "Berlin", "country": "DE", "vat_id": "DE123456789"},'
    ' "CPO2": {"name": "Boltway GmbH", "street": "Am Kanal 2", "city": "Potsdam",'
    ' "country": "DE", "vat_id": "DE987654321"}}'
)


def _app(db: Database, bus: InMemoryBus, suppliers: Path) -> TestClient:
    settings = InvoicingSettings(
        invoicing_jwt_secret=SecretStr(SECRET),
        invoicing_suppliers_file=suppliers,
    )
    return TestClient(create_app(settings, bus, db))


@pytest.fixture
def client(sqlite_db: Database, bus: InMemoryBus, tmp_path: Path) -> Iterator[TestClient]:
    suppliers = tmp_path / "suppliers.json"
    suppliers.write_text(SUPPLIERS)
    with _app(sqlite_db, bus, suppliers) as test_client:
        yield test_client


def auth(subject: str, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(subject, role, SECRET)}"}


def wait_for(client: TestClient, headers: dict[str, str], count: int) -> list[dict[str, str]]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        invoices: list[dict[str, str]] = client.get("/v1/invoices", headers=headers).json()[
            "invoices"
        ]
        if len(invoices) >= count:
            return invoices
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} invoices after 20 s")


def test_each_party_sees_only_its_own_invoices(
    client: TestClient, bus: InMemoryBus, make_settled: Factory, wrap: Wrap
) -> None:
    for session_id, cpo, driver in (
        ("s-1", "CPO1", "alice"),
        ("s-2", "CPO1", "bob"),
        ("s-3", "CPO2", "alice"),
    ):
        bus.publish(Topic.SESSIONS, wrap(make_settled(session_id, cpo_id=cpo, driver_id=driver)))
    alice = wait_for(client, auth("alice", Role.DRIVER), 2)
    assert sorted(i["session_id"] for i in alice) == ["s-1", "s-3"]
    cpo1 = wait_for(client, auth("CPO1", Role.CPO), 2)
    assert sorted(i["number"] for i in cpo1) == ["INV-CPO1-00000001", "INV-CPO1-00000002"]
    bob = wait_for(client, auth("bob", Role.DRIVER), 1)
    assert [i["session_id"] for i in bob] == ["s-2"]
    assert wait_for(client, auth("CPO2", Role.CPO), 1)[0]["number"] == "INV-CPO2-00000001"

    bobs_number = bob[0]["number"]
    assert (
        client.get(f"/v1/invoices/{bobs_number}", headers=auth("alice", Role.DRIVER)).status_code
        == 404
    )
    assert (
        client.get(f"/v1/invoices/{bobs_number}/pdf", headers=auth("CPO2", Role.CPO)).status_code
        == 404
    )
    mine = client.get(f"/v1/invoices/{bobs_number}", headers=auth("bob", Role.DRIVER))
    assert mine.status_code == 200
    assert mine.json()["supplier"]["vat_id"] == "DE123456789"
    pdf = client.get(f"/v1/invoices/{bobs_number}/pdf", headers=auth("CPO1", Role.CPO))
    assert (pdf.status_code, pdf.headers["content-type"]) == (200, "application/pdf")
    assert pdf.content.startswith(b"%PDF")
    xml = client.get(f"/v1/invoices/{bobs_number}/xml", headers=auth("bob", Role.DRIVER))
    assert b"<ram:ID>INV-CPO1-0000000" in xml.content


def test_tokens_are_required_and_checked(client: TestClient) -> None:
    assert client.get("/v1/invoices").status_code == 401
    forged = issue_token("alice", Role.DRIVER, "another-secret-that-is-also-32-bytes")
    response = client.get("/v1/invoices", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    import jwt

    admin = jwt.encode({"sub": "x", "role": "admin"}, SECRET, algorithm="HS256")
    response = client.get("/v1/invoices", headers={"Authorization": f"Bearer {admin}"})
    assert response.json()["detail"] == "invalid token: role must be driver or cpo"
    expired = issue_token("alice", Role.DRIVER, SECRET, exp=1)
    response = client.get("/v1/invoices", headers={"Authorization": f"Bearer {expired}"})
    assert response.json()["detail"] == "the token has expired"


def test_ops_routes(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    assert b"chargenet_invoicing_invoices" in client.get("/metrics").content


def test_a_cpo_sees_its_settlements_refused_an_invoice(
    client: TestClient, bus: InMemoryBus, make_settled: Factory, wrap: Wrap
) -> None:
    # CPO3 has no supplier in the file: its settlement is refused, not invoiced under its id.
    bus.publish(Topic.SESSIONS, wrap(make_settled("s-9", cpo_id="CPO3", driver_id="carol")))
    bus.publish(Topic.SESSIONS, wrap(make_settled("s-10", cpo_id="CPO1", driver_id="carol")))
    assert [i["session_id"] for i in wait_for(client, auth("carol", Role.DRIVER), 1)] == ["s-10"]
    deadline = time.monotonic() + 20
    while True:  # the two sessions may sit on different partitions
        answer = client.get("/v1/refused-settlements", headers=auth("CPO3", Role.CPO))
        assert answer.status_code == 200
        if answer.json()["refused"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    [refused] = answer.json()["refused"]
    assert (refused["session_id"], refused["cpo_id"]) == ("s-9", "CPO3")
    assert "no supplier is configured for CPO 'CPO3'" in refused["reason"]
    assert client.get("/v1/invoices", headers=auth("CPO3", Role.CPO)).json()["invoices"] == []
    # each CPO sees only its own; a driver none
    other = client.get("/v1/refused-settlements", headers=auth("CPO1", Role.CPO)).json()
    assert other["refused"] == []
    driver = client.get("/v1/refused-settlements", headers=auth("carol", Role.DRIVER))
    assert driver.status_code == 403


def test_a_refused_settlement_is_invoiced_when_the_service_starts_with_its_supplier(
    client: TestClient,
    bus: InMemoryBus,
    sqlite_db: Database,
    tmp_path: Path,
    make_settled: Factory,
    wrap: Wrap,
) -> None:
    bus.publish(Topic.SESSIONS, wrap(make_settled("s-11", cpo_id="CPO3", driver_id="dave")))
    deadline = time.monotonic() + 20
    while not client.get("/v1/refused-settlements", headers=auth("CPO3", Role.CPO)).json()[
        "refused"
    ]:
        assert time.monotonic() < deadline, "the settlement was never refused"
        time.sleep(0.05)
    # The operator adds CPO3's supplier and restarts invoicing (the bus will not deliver the
    # settlement again: it was handled).
    with_cpo3 = tmp_path / "suppliers-cpo3.json"
    with_cpo3.write_text(
        SUPPLIERS[:-1] + ', "CPO3": {"name": "Ladepunkt AG", "street": "Hafenweg 3",'
        ' "city": "Hamburg", "country": "DE", "vat_id": "DE111222333"}}'
    )
    with _app(sqlite_db, InMemoryBus(partitions=2), with_cpo3) as restarted:
        [invoice] = restarted.get("/v1/invoices", headers=auth("CPO3", Role.CPO)).json()["invoices"]
        assert (invoice["session_id"], invoice["driver_id"]) == ("s-11", "dave")
        refused = restarted.get("/v1/refused-settlements", headers=auth("CPO3", Role.CPO))
        assert refused.json()["refused"] == []
        document = restarted.get(
            f"/v1/invoices/{invoice['number']}", headers=auth("dave", Role.DRIVER)
        )
        assert document.json()["supplier"]["name"] == "Ladepunkt AG"
