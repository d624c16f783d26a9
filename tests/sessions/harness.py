"""Every service of a charging session, real and in one process: signer, registry, wallet,
escrow and a gateway with simulated OCPP charge points.

Two ways to run, chosen by configuration only: the embedded default (in-process bus, SQLite,
py-evm) or the distributed components (Kafka, PostgreSQL, the Hardhat node). Drivers and CPOs go
through the services' REST APIs; the charge point speaks OCPP to the gateway.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from eth_account import Account
from fastapi.testclient import TestClient
from web3 import Web3
from web3.types import Wei

from chargenet.cli.network.embedded import LoopThread
from chargenet.core.auth import Role, issue_token
from chargenet.core.bus import EventBus, create_bus
from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.chain import (
    Deployment,
    SessionState,
    connect,
    deploy_chargenet,
    richest_account,
)
from chargenet.core.db import Database
from chargenet.core.envelope import Envelope
from chargenet.core.ocpp_sim import ChargePoint16, Endpoint
from chargenet.core.pricing import canonical_hash
from chargenet.core.settings import DEVELOPMENT_SECRET, BusKind, CoreSettings
from chargenet.core.signer_client import SignerClient
from chargenet.core.signer_client.permissions import (
    callers_json,
    escrow_caller,
    registry_caller,
    wallet_caller,
)
from chargenet.core.web.station_paths import path_segment
from chargenet.escrow.app import EscrowService
from chargenet.escrow.app import migrate as migrate_escrow
from chargenet.escrow.models import SessionRow
from chargenet.escrow.settings import EscrowSettings
from chargenet.escrow.states import FINAL
from chargenet.gateway.credentials import CredentialStore, hash_password
from chargenet.gateway.server import Gateway
from chargenet.gateway.settings import GatewaySettings
from chargenet.registry.main import create_app as create_registry_app
from chargenet.registry.main import migrate as migrate_registry
from chargenet.registry.settings import RegistrySettings
from chargenet.signer.settings import SignerSettings
from chargenet.wallet.app import create_app as create_wallet_app
from chargenet.wallet.app import migrate as migrate_wallet
from chargenet.wallet.registry_client import RegistryClient
from chargenet.wallet.settings import WalletSettings
from tests.escrow.harness import (
    TARIFF,
    LockedTesterProvider,
    contracts_json,
    wait_for,
)
from tests.signer.harness import running_signer

CPO_ID = "cpo-1"
CP_PASSWORD = "sim-password-0123456789"
_HASH = hash_password(CP_PASSWORD)
WALLET_TOKEN = "test-wallet-caller-token-0123456789"
REGISTRY_TOKEN = "test-registry-caller-token-0123456789"
ESCROW_TOKEN = "test-escrow-caller-token-0123456789"
FINAL_WALLET_STATES = ("settled", "refunded", "failed", "cancelled")


def callers() -> str:
    return callers_json(
        {
            "wallet": wallet_caller(WALLET_TOKEN),
            "registry": registry_caller(REGISTRY_TOKEN, ["cpo"]),
            "escrow": escrow_caller(ESCROW_TOKEN, ["cpo"]),
        }
    )


@dataclass(frozen=True)
class Components:
    """Where the distributed components are; None everywhere means the embedded default."""

    kafka: str | None = None
    topic_prefix: str = ""
    databases: dict[str, str] = field(default_factory=dict)  # service -> PostgreSQL URL
    rpc_url: str | None = None


@dataclass
class Driver:
    email: str
    driver_id: str
    address: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Stack:
    w3: Web3
    deployment: Deployment
    bus: EventBus
    wallet: TestClient
    registry: TestClient
    escrow: EscrowService
    escrow_db: Database
    gateway: Gateway
    ocpp: LoopThread
    events: list[Envelope]
    cpo_address: str
    free_cp_ids: list[str] = field(default_factory=list)
    charge_points: dict[str, ChargePoint16] = field(default_factory=dict)

    # -- people ------------------------------------------------------------------------------
    def driver(self, top_up: int) -> Driver:
        email = f"{uuid.uuid4().hex[:12]}@example.org"
        password = "correct horse battery"
        created = self.wallet.post("/v1/accounts", json={"email": email, "password": password})
        assert created.status_code == 201, created.text
        token = self.wallet.post(
            "/v1/auth/token",
            data={"username": email, "password": password, "grant_type": "password"},
        )
        assert token.status_code == 200, token.text
        driver = Driver(
            email,
            created.json()["driver_id"],
            created.json()["address"],
            token.json()["access_token"],
        )
        paid = self.wallet.post(
            "/v1/wallet/topups",
            json={"payment_reference": f"pay-{uuid.uuid4().hex}", "amount": top_up},
            headers=driver.headers,
        )
        assert paid.status_code in (200, 201), paid.text
        wait_for("top-up on chain", lambda: self.deposit(driver.address) == top_up, 60)
        return driver

    # -- stations and charge points ----------------------------------------------------------
    def station(self) -> tuple[str, str]:
        """Register a station through the registry's CPO API; returns (station id, cp id)."""
        cp_id = self.free_cp_ids.pop()
        station_id = f"DE*CNT*S{cp_id.removeprefix('CP-')}"
        body = {
            "station_id": station_id,
            "location": location(station_id, cp_id),
            "tariff": TARIFF,
            "meter_key_hash": "0x" + canonical_hash({"meter": station_id}).hex(),
        }
        answer = self.registry.post("/v1/cpo/stations", json=body, headers=cpo_headers())
        assert answer.status_code == 202, answer.text
        wait_for(
            f"station {station_id} indexed",
            lambda: (
                self.registry.get(f"/v1/stations/{path_segment(station_id)}").status_code == 200
            ),
            60,
        )
        return station_id, cp_id

    def connect(self, station_id: str, cp_id: str, **options: Any) -> ChargePoint16:
        """The station's charge point connects over OCPP 1.6, boots and reports Available."""
        endpoint = Endpoint(f"ws://127.0.0.1:{self.gateway.port}/ocpp", password=CP_PASSWORD)

        async def online() -> ChargePoint16:
            cp = await ChargePoint16.connect(endpoint, cp_id, **options)
            await cp.boot()
            await cp.status(1, "Available")
            return cp

        cp = self.ocpp.run(online())
        self.charge_points[cp_id] = cp
        wait_for(
            f"{cp_id} online",
            lambda: (
                connector_status(
                    self.registry.get(f"/v1/stations/{path_segment(station_id)}").json()
                )
                == (True, "Available")
            ),
            30,
        )
        return cp

    def retire(self, station_id: str) -> None:
        answer = self.registry.delete(
            f"/v1/cpo/stations/{path_segment(station_id)}", headers=cpo_headers()
        )
        assert answer.status_code == 202, answer.text
        wait_for(
            f"{station_id} retired",
            lambda: (
                not self.registry.get(f"/v1/stations/{path_segment(station_id)}").json()["active"]
            ),
            60,
        )

    # -- sessions ----------------------------------------------------------------------------
    def request(self, driver: Driver, station_id: str, maximum: int, key: str | None = None) -> Any:
        return self.wallet.post(
            "/v1/sessions",
            json={"station_id": station_id, "connector_id": "1", "max_amount": maximum},
            headers={**driver.headers, "Idempotency-Key": key or uuid.uuid4().hex},
        )

    def view(self, driver: Driver, session_id: str) -> dict[str, Any]:
        answer = self.wallet.get(f"/v1/sessions/{session_id}", headers=driver.headers)
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()
        return data

    def await_state(
        self, driver: Driver, session_id: str, state: str, timeout: float = 60.0
    ) -> dict[str, Any]:
        return wait_for(
            f"{session_id} {state} in the wallet",
            lambda: (v := self.view(driver, session_id))["state"] == state and v,
            timeout,
        )

    def escrow_state(self, session_id: str) -> str | None:
        with self.escrow_db.session() as session:
            row = session.get(SessionRow, session_id)
            return row.state if row is not None else None

    def describe(self, session_id: str) -> str:
        with self.escrow_db.session() as session:
            row = session.get(SessionRow, session_id)
            return "no row" if row is None else f"{row.state} ({row.reason})"

    def session_events(self, session_id: str) -> list[str]:
        return [e.type.split(".")[2] for e in list(self.events) if e.subject == session_id]

    # -- chain -------------------------------------------------------------------------------
    def deposit(self, address: str) -> int:
        return int(self.deployment.escrow.functions.depositOf(address).call())

    def check_invariants(self, drivers: list[Driver]) -> dict[str, int]:
        """supply = wallets + deposits + locked; nothing locked; no session non-final."""
        token, escrow = self.deployment.token.functions, self.deployment.escrow.functions
        holders = [d.address for d in drivers] + [self.cpo_address]
        supply = int(token.totalSupply().call())
        wallets = sum(int(token.balanceOf(a).call()) for a in holders)
        deposits = sum(int(escrow.depositOf(a).call()) for a in holders)
        locked = 0
        opened = self.deployment.escrow.events.SessionOpened().get_logs(
            from_block=self.deployment_block
        )
        for event in opened:
            state, _d, _i, maximum, _e = escrow.sessionOf(event["args"]["sessionId"]).call()
            if SessionState(int(state)) is SessionState.OPEN:
                locked += int(maximum)
        held = int(token.balanceOf(self.deployment.escrow.address).call())
        assert held == deposits + locked, (held, deposits, locked)
        assert supply == wallets + deposits + locked, (supply, wallets, deposits, locked)
        assert locked == 0, f"{locked} token units still locked"
        with self.escrow_db.session() as session:
            stuck = session.execute(
                sa.select(SessionRow.session_id, SessionRow.state).where(
                    SessionRow.state.not_in([s.value for s in FINAL])
                )
            ).all()
        assert not stuck, f"escrow sessions left non-final: {stuck}"
        for driver in drivers:
            # The wallet's view follows the bus: give it a moment to catch up.
            wait_for(
                f"driver {driver.driver_id}'s sessions final in the wallet",
                lambda d=driver: all(  # type: ignore[misc]
                    s["state"] in FINAL_WALLET_STATES
                    for s in self.wallet.get("/v1/sessions", headers=d.headers).json()["sessions"]
                ),
                15,
            )
        return {"supply": supply, "wallets": wallets, "deposits": deposits, "locked": locked}

    deployment_block: int = 0


def cpo_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(CPO_ID, Role.CPO, DEVELOPMENT_SECRET)}"}


def location(station_id: str, cp_id: str) -> dict[str, Any]:
    return {
        "id": station_id,
        "name": "Test station",
        "coordinates": {"latitude": "52.520008", "longitude": "13.404954"},
        "time_zone": "Europe/Berlin",
        "charge_point_id": cp_id,
        "evses": [
            {
                "uid": "E1",
                "evse_id": "DE*CNT*E1",
                "connectors": [
                    {
                        "id": "1",
                        "standard": "IEC_62196_T2",
                        "format": "SOCKET",
                        "power_type": "AC_3_PHASE",
                        "max_voltage": 230,
                        "max_amperage": 32,
                        "max_electric_power": 22000,
                    }
                ],
            }
        ],
    }


def connector_status(detail: dict[str, Any]) -> tuple[bool, str | None]:
    found = detail.get("location") or {}
    points = found.get("charge_points") or [{}]
    evses = found.get("evses") or [{"connectors": [{}]}]
    return bool(points[0].get("online")), evses[0]["connectors"][0].get("status")


def _core(components: Components, service: str, tmp: Path) -> dict[str, Any]:
    """The settings every service shares: bus, database, log format."""
    fields: dict[str, Any] = {
        "database_url": components.databases.get(service, f"sqlite:///{tmp}/{service}.db"),
        "log_json": False,
        "log_level": "WARNING",
    }
    if components.kafka is not None:
        fields.update(
            bus=BusKind.KAFKA,
            kafka_bootstrap_servers=components.kafka,
            kafka_topic_prefix=components.topic_prefix,
            kafka_partitions=2,
        )
    return fields


@contextmanager
def stack(tmp: Path, components: Components, **escrow_overrides: Any) -> Iterator[Stack]:
    provider: Any = None
    if components.rpc_url is None:
        provider = LockedTesterProvider()
        w3 = Web3(provider)
    else:
        w3 = connect(components.rpc_url)
    # Node-held accounts: the node picks their nonces, so tests sharing it do not collide.
    admin = richest_account(w3)
    minter, relayer, cpo = (Account.create() for _ in range(3))
    first_block = int(w3.eth.block_number)
    deployment = deploy_chargenet(w3, admin=admin, minter=minter.address)
    if provider is None:  # the in-process signer funds its keys itself
        for account in (minter, relayer, cpo):
            w3.eth.send_transaction({"from": admin, "to": account.address, "value": Wei(10**19)})
    keys = {"minter": minter, "relayer": relayer, "cpo": cpo}
    signer_settings = SignerSettings(
        **_core(components, "signer", tmp),
        chain_rpc_url=components.rpc_url or "inprocess://eth-tester",
        signer_listen="127.0.0.1:0",
        signer_keys=",".join(f"{a}=0x{bytes(k.key).hex()}" for a, k in keys.items()),
        signer_callers=callers(),
        signer_contracts=contracts_json(deployment),
        signer_confirmations=1,
        signer_poll_seconds=0.05,
    )
    bus: EventBus = (
        InMemoryBus(partitions=4)
        if components.kafka is None
        else create_bus(CoreSettings(**_core(components, "bus", tmp)))
    )
    ocpp = LoopThread("ocpp")
    events: list[Envelope] = []
    with ExitStack() as stack_:
        stack_.callback(bus.close)
        stack_.callback(ocpp.close)
        signer_url = stack_.enter_context(running_signer(signer_settings, provider)).url
        bus.ensure_topics(["sessions", "gateway-results", "charge-points", "stations"])
        collector = bus.subscribe(
            ["sessions"], f"test-collector-{uuid.uuid4().hex[:6]}", events.append
        )
        stack_.callback(collector.close)

        registry_db = Database(_core(components, "registry", tmp)["database_url"])
        stack_.callback(registry_db.dispose)
        migrate_registry(registry_db)
        registry_signer = stack_.enter_context(SignerClient(signer_url, REGISTRY_TOKEN))
        registry_app = create_registry_app(
            RegistrySettings(
                **_core(components, "registry", tmp),
                registry_address=deployment.registry.address,
                registry_escrow_address=deployment.escrow.address,
                registry_start_block=first_block,
                registry_confirmations=0,
                registry_poll_seconds=0.1,
                registry_cpo_keys=json.dumps({CPO_ID: "cpo"}),
            ),
            bus,
            registry_db,
            w3=w3,
            signer=registry_signer,
        )
        registry = stack_.enter_context(TestClient(registry_app, base_url="http://registry"))

        wallet_settings = WalletSettings(
            **_core(components, "wallet", tmp),
            wallet_token_address=deployment.token.address,
            wallet_escrow_address=deployment.escrow.address,
            wallet_start_block=first_block,
            wallet_balance_cache_seconds=0,
            wallet_stream_poll_seconds=0.05,
            wallet_cpo_ids=json.dumps({cpo.address: CPO_ID}),
        )
        wallet_db = Database(wallet_settings.database_url)
        stack_.callback(wallet_db.dispose)
        migrate_wallet(wallet_db)
        wallet_signer = stack_.enter_context(SignerClient(signer_url, WALLET_TOKEN))
        wallet_app = create_wallet_app(
            wallet_settings, bus, wallet_db, wallet_signer, RegistryClient(registry), w3=w3
        )
        wallet = stack_.enter_context(TestClient(wallet_app, base_url="http://wallet"))

        escrow_fields: dict[str, Any] = {
            **_core(components, "escrow", tmp),
            "escrow_address": deployment.escrow.address,
            "escrow_settler_keys": json.dumps({CPO_ID: "cpo"}),
            "escrow_open_window_seconds": 0.2,
            "escrow_settle_delay_seconds": 0.2,
            "escrow_sweep_seconds": 0.3,
        }
        escrow_fields.update(escrow_overrides)
        escrow_db = Database(escrow_fields["database_url"])
        stack_.callback(escrow_db.dispose)
        migrate_escrow(escrow_db)
        escrow_signer = stack_.enter_context(SignerClient(signer_url, ESCROW_TOKEN))
        escrow = EscrowService(
            EscrowSettings(**escrow_fields), escrow_db, bus, w3=w3, signer=escrow_signer
        )
        escrow.start()
        stack_.callback(escrow.stop)

        cp_ids = [f"CP-{secrets.token_hex(3).upper()}{n}" for n in range(8)]
        gateway = _gateway(components, tmp, bus, ocpp, cp_ids)
        stack_.callback(lambda: ocpp.run(gateway.stop()))
        built = Stack(
            w3=w3,
            deployment=deployment,
            bus=bus,
            wallet=wallet,
            registry=registry,
            escrow=escrow,
            escrow_db=escrow_db,
            gateway=gateway,
            ocpp=ocpp,
            events=events,
            cpo_address=cpo.address,
            free_cp_ids=cp_ids,
        )
        built.deployment_block = first_block
        stack_.callback(lambda: _close_charge_points(built))
        yield built


def _gateway(
    components: Components, tmp: Path, bus: EventBus, ocpp: LoopThread, cp_ids: list[str]
) -> Gateway:
    """A gateway for the CPO that lets any charge point in with the test password."""
    settings = GatewaySettings(
        **{k: v for k, v in _core(components, "gateway", tmp).items() if k != "database_url"},
        cpo_id=CPO_ID,
        replica_id="replica-a",
        ws_port=0,
        security_profile=1,
        charge_points_json=json.dumps(
            {"charge_points": [{"id": cp, "password_hash": _HASH} for cp in cp_ids]}
        ),
        authorize_grace_seconds=1.0,
    )
    gateway = Gateway(settings, bus, CredentialStore.from_json(settings.charge_points_json or ""))
    ocpp.run(gateway.start())
    return gateway


def _close_charge_points(built: Stack) -> None:
    for cp in built.charge_points.values():
        try:
            built.ocpp.run(cp.close(), timeout=5)
        except Exception:
            continue
