"""A running world for the wallet's tests: chain, signer, registry, bus and the wallet itself.

Everything is real and in process: the contracts on eth-tester (py-evm), the signer's gRPC server
on its own event loop, the registry app (indexer, status consumer) and the wallet app on the
in-process bus. Stations are registered through the registry's CPO API (signer -> chain ->
indexer), and their charge points report through the bus as the gateway would.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from eth_account import Account
from fastapi.testclient import TestClient
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from chargenet.core.auth import Role, issue_token
from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.chain import Deployment, deploy_chargenet, load_artifact, richest_account
from chargenet.core.db import Database
from chargenet.core.envelope import Envelope, EventData, make_envelope
from chargenet.core.events import (
    ChargePointBooted,
    ChargePointDisconnected,
    ConnectorStatusChanged,
    MeterReading,
    SessionStarted,
)
from chargenet.core.pricing import canonical_hash
from chargenet.core.settings import DEVELOPMENT_SECRET
from chargenet.core.signer_client import SignerClient
from chargenet.core.signer_client.permissions import callers_json, registry_caller, wallet_caller
from chargenet.registry.main import create_app as create_registry_app
from chargenet.registry.main import migrate as migrate_registry
from chargenet.registry.settings import RegistrySettings
from chargenet.signer.settings import SignerSettings
from chargenet.wallet.app import create_app, migrate
from chargenet.wallet.models import ChargingSession
from chargenet.wallet.payments import TestPaymentProvider
from chargenet.wallet.registry_client import RegistryClient, station_path
from chargenet.wallet.settings import WalletSettings
from tests.signer.harness import running_signer

WALLET_TOKEN = "test-wallet-caller-token-0123456789"
REGISTRY_TOKEN = "test-registry-caller-token-0123456789"
CPO_ID = "cpo-1"
TARIFF: dict[str, Any] = {
    "country_code": "DE",
    "party_id": "CNT",
    "id": "AC-1",
    "currency": "EUR",
    "elements": [
        {
            "price_components": [
                {"type": "FLAT", "price": "0.50", "vat": "19", "step_size": 1},
                {"type": "ENERGY", "price": "0.40", "vat": "19", "step_size": 1},
            ]
        }
    ],
    "last_updated": "2026-01-01T00:00:00Z",
}
T = TypeVar("T")


class LockedTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe; the signer, the indexer and the wallet share one chain."""

    _lock = threading.RLock()

    def make_request(self, method: Any, params: Any) -> Any:
        with self._lock:
            return super().make_request(method, params)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _contracts(deployment: Deployment) -> str:
    return json.dumps(
        {
            name: {"address": contract.address, "abi": load_artifact(name).abi}
            for name, contract in (
                ("ChargeToken", deployment.token),
                ("ChargingEscrow", deployment.escrow),
                ("StationRegistry", deployment.registry),
            )
        }
    )


def _callers() -> str:
    return callers_json(
        {
            "wallet": wallet_caller(WALLET_TOKEN),
            "registry": registry_caller(REGISTRY_TOKEN, ["cpo"]),
        }
    )


@dataclass
class World:
    w3: Web3
    deployment: Deployment
    bus: InMemoryBus
    wallet: TestClient
    registry: TestClient
    wallet_db: Database
    payments: TestPaymentProvider
    admin: str
    settings: WalletSettings
    signer_url: str
    stations: list[str] = field(default_factory=list)

    # -- drivers ---------------------------------------------------------------------------------

    def driver(self, password: str = "correct horse battery") -> Driver:
        email = f"{uuid.uuid4().hex[:12]}@example.org"
        created = self.wallet.post("/v1/accounts", json={"email": email, "password": password})
        assert created.status_code == 201, created.text
        token = self.login(email, password)
        assert token.status_code == 200, token.text
        return Driver(
            email=email,
            driver_id=created.json()["driver_id"],
            address=created.json()["address"],
            token=token.json()["access_token"],
        )

    def login(self, email: str, password: str) -> Any:
        return self.wallet.post(
            "/v1/auth/token",
            data={"username": email, "password": password, "grant_type": "password"},
        )

    def top_up(self, driver: Driver, amount: int, reference: str | None = None) -> Any:
        return self.wallet.post(
            "/v1/wallet/topups",
            json={"payment_reference": reference or f"pay-{uuid.uuid4().hex}", "amount": amount},
            headers=driver.headers,
        )

    # -- stations --------------------------------------------------------------------------------

    def station(
        self,
        connectors: int = 1,
        station_id: str | None = None,
        tariff: dict[str, Any] | None = None,
    ) -> str:
        """Register a station through the registry's CPO API; wait until it is indexed."""
        station_id = station_id or f"DE*CNT*S{secrets.token_hex(4).upper()}"
        body = {
            "station_id": station_id,
            "location": location(station_id, connectors),
            "tariff": tariff or TARIFF,
            "meter_key_hash": "0x" + canonical_hash({"meter": station_id}).hex(),
        }
        answer = self.registry.post("/v1/cpo/stations", json=body, headers=cpo_headers())
        assert answer.status_code == 202, answer.text
        wait_for(
            f"station {station_id} indexed",
            lambda: self.registry.get(station_path(station_id)).status_code == 200,
        )
        # The location and tariff documents were stored with the registration; once indexed,
        # the detail carries them.
        self.stations.append(station_id)
        return station_id

    def charge_point_online(self, station_id: str, status: str = "Available") -> None:
        cp = charge_point_of(station_id)
        self.publish(
            ChargePointBooted(
                charge_point_id=cp, cpo_id=CPO_ID, ocpp_version="1.6", vendor="T", model="T"
            ),
            cp,
        )
        self.publish(
            ConnectorStatusChanged(
                charge_point_id=cp,
                cpo_id=CPO_ID,
                connector_id=1,
                status=status,
                reported_at=datetime.now(UTC),
            ),
            cp,
        )
        wait_for(
            f"{cp} {status}",
            lambda: (
                _connector_status(self.registry.get(station_path(station_id)).json())
                == (True, status)
            ),
        )

    def session_row(self, session_id: str) -> ChargingSession:
        """The wallet's row of a session, as it is committed now."""
        with self.wallet_db.session() as session:
            row = session.get(ChargingSession, session_id)
        assert row is not None, session_id
        return row

    def charge_point_offline(self, station_id: str) -> None:
        cp = charge_point_of(station_id)
        self.publish(
            ChargePointDisconnected(charge_point_id=cp, cpo_id=CPO_ID, reason="socket closed"),
            cp,
        )
        wait_for(
            f"{cp} offline",
            lambda: not _connector_status(self.registry.get(station_path(station_id)).json())[0],
        )

    def retire(self, station_id: str) -> None:
        answer = self.registry.delete(
            f"/v1/cpo/stations/{quote(station_id, safe='')}", headers=cpo_headers()
        )
        assert answer.status_code == 202, answer.text
        wait_for(
            f"{station_id} retired",
            lambda: not self.registry.get(station_path(station_id)).json()["active"],
        )

    # -- bus and chain ---------------------------------------------------------------------------

    def publish(self, data: EventData, subject: str) -> None:
        self.bus.publish(data.topic, make_envelope(data, subject=subject, source="test"))

    def session_events(self, type_suffix: str = "") -> list[Any]:
        return [e for e in self.bus.events("sessions") if e.type.endswith(type_suffix)]

    def token_balance(self, address: str) -> int:
        return int(self.deployment.token.functions.balanceOf(address).call())

    def deposit(self, address: str) -> int:
        return int(self.deployment.escrow.functions.depositOf(address).call())

    def supply(self) -> int:
        return int(self.deployment.token.functions.totalSupply().call())


@dataclass
class Driver:
    email: str
    driver_id: str
    address: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def cpo_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(CPO_ID, Role.CPO, DEVELOPMENT_SECRET)}"}


def charge_point_of(station_id: str) -> str:
    return "CP-" + station_id.rsplit("S", 1)[1]


def location(station_id: str, connectors: int) -> dict[str, Any]:
    return {
        "id": station_id,
        "name": "Test station",
        "coordinates": {"latitude": "52.520008", "longitude": "13.404954"},
        "time_zone": "Europe/Berlin",
        "charge_point_id": charge_point_of(station_id),
        "evses": [
            {
                "uid": f"E{n}",
                "evse_id": f"DE*CNT*E{n}",
                "connectors": [
                    {
                        "id": str(n),
                        "standard": "IEC_62196_T2",
                        "format": "SOCKET",
                        "power_type": "AC_3_PHASE",
                        "max_voltage": 230,
                        "max_amperage": 32,
                        "max_electric_power": 22000,
                    }
                ],
            }
            for n in range(1, connectors + 1)
        ],
    }


def _connector_status(detail: dict[str, Any]) -> tuple[bool, str | None]:
    location = detail.get("location") or {}
    points = location.get("charge_points") or [{}]
    evses = location.get("evses") or [{"connectors": [{}]}]
    return bool(points[0].get("online")), evses[0]["connectors"][0].get("status")


@contextmanager
def world(tmp: Path, wallet_database_url: str | None = None) -> Iterator[World]:
    provider = LockedTesterProvider()
    w3 = Web3(provider)
    admin = richest_account(w3)
    minter, relayer, cpo = (Account.create() for _ in range(3))
    deployment = deploy_chargenet(w3, admin=admin, minter=minter.address)
    keys = {"minter": minter, "relayer": relayer, "cpo": cpo}
    signer_settings = SignerSettings(
        database_url=f"sqlite:///{tmp}/signer.db",
        signer_listen="127.0.0.1:0",
        signer_keys=",".join(f"{a}=0x{bytes(k.key).hex()}" for a, k in keys.items()),
        signer_callers=_callers(),
        signer_contracts=_contracts(deployment),
        signer_confirmations=1,
        signer_poll_seconds=0.05,
        log_level="WARNING",
    )
    bus = InMemoryBus(partitions=4)
    payments = TestPaymentProvider()
    with ExitStack() as stack:
        signer_url = stack.enter_context(running_signer(signer_settings, provider)).url
        registry_db = Database(f"sqlite:///{tmp}/registry.db")
        stack.callback(registry_db.dispose)
        migrate_registry(registry_db)
        registry_signer = stack.enter_context(SignerClient(signer_url, REGISTRY_TOKEN))
        registry_app = create_registry_app(
            RegistrySettings(
                registry_address=deployment.registry.address,
                registry_escrow_address=deployment.escrow.address,
                registry_confirmations=0,
                registry_poll_seconds=0.05,
                registry_cpo_keys=json.dumps({CPO_ID: "cpo"}),
            ),
            bus,
            registry_db,
            w3=w3,
            signer=registry_signer,
        )
        registry = stack.enter_context(TestClient(registry_app, base_url="http://registry"))

        settings = WalletSettings(
            database_url=wallet_database_url or f"sqlite:///{tmp}/wallet.db",
            wallet_token_address=deployment.token.address,
            wallet_escrow_address=deployment.escrow.address,
            wallet_balance_cache_seconds=0,
            wallet_stream_poll_seconds=0.05,
            wallet_cpo_ids=json.dumps({cpo.address: CPO_ID}),
        )
        wallet_db = Database(settings.database_url)
        stack.callback(wallet_db.dispose)
        migrate(wallet_db)
        wallet_signer = stack.enter_context(SignerClient(signer_url, WALLET_TOKEN))
        app = create_app(
            settings,
            bus,
            wallet_db,
            wallet_signer,
            RegistryClient(registry),
            w3=w3,
            payments=payments,
        )
        wallet = stack.enter_context(TestClient(app, base_url="http://wallet"))
        yield World(
            w3=w3,
            deployment=deployment,
            bus=bus,
            wallet=wallet,
            registry=registry,
            wallet_db=wallet_db,
            payments=payments,
            admin=admin,
            settings=settings,
            signer_url=signer_url,
        )


START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EUR = 1_000_000


@dataclass
class Requested:
    """A session the wallet accepted (10 EUR at most) at an online charge point."""

    sid: str
    station: str
    cp: str
    driver: Driver

    def started(self, meter_start_wh: int = 0) -> Envelope:
        """The charge point's start at ``START`` (transaction ``t1``)."""
        event = SessionStarted(
            session_id=self.sid,
            charge_point_id=self.cp,
            connector_id=1,
            transaction_id="t1",
            meter_start_wh=meter_start_wh,
            started_at=START,
        )
        return make_envelope(event, subject=self.sid, source="test")

    def meter(self, minutes: int, energy_wh: int) -> Envelope:
        reading = MeterReading(
            session_id=self.sid,
            charge_point_id=self.cp,
            transaction_id="t1",
            energy_wh=energy_wh,
            measured_at=START + timedelta(minutes=minutes),
        )
        return make_envelope(reading, subject=self.sid, source="test")


def requested(env: World, key: str) -> Requested:
    """Asks for a session (the key is its Idempotency-Key) as a topped-up new driver."""
    station = env.station()
    env.charge_point_online(station)
    driver = env.driver()
    assert env.top_up(driver, 20 * EUR).status_code == 201
    answer = env.wallet.post(
        "/v1/sessions",
        json={"station_id": station, "connector_id": "1", "max_amount": 10 * EUR},
        headers={**driver.headers, "Idempotency-Key": key},
    )
    return Requested(answer.json()["session_id"], station, charge_point_of(station), driver)
