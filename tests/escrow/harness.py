"""The escrow against real parts, in process: py-evm chain, the signer's gRPC server, a gateway
with simulated OCPP charge points, the in-process bus and SQLite.

The driver's side is played by the test: it signs the EIP-712 OpenSession with the driver's key
and publishes ``SessionRequested`` as the wallet would (tests/sessions run the real wallet).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import Wei

from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.chain import (
    Deployment,
    SessionState,
    StationInfo,
    deploy_chargenet,
    load_artifact,
    send,
    sign_open_session,
)
from chargenet.core.db import Database
from chargenet.core.envelope import Envelope, EventData, make_envelope
from chargenet.core.events import SessionRequested
from chargenet.core.pricing import Tariff, tariff_hash
from chargenet.core.signer_client import SignerClient
from chargenet.core.signer_client.permissions import escrow_caller
from chargenet.escrow.app import EscrowService, migrate
from chargenet.escrow.models import ChainOp, MeterSampleRow, SessionRow
from chargenet.escrow.settings import EscrowSettings
from chargenet.escrow.states import FINAL, State
from chargenet.signer.settings import SignerSettings
from tests.signer.harness import running_signer

T = TypeVar("T")
CPO_ID = "cpo-test"
ESCROW_TOKEN = "test-escrow-caller-token-0123456789"
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


def session_row(session_id: str, state: State, **fields: Any) -> SessionRow:
    """A session row with a plausible value in every column a row needs; ``fields`` override."""
    values: dict[str, Any] = {
        "session_id": session_id,
        "chain_session_id": "0x" + uuid.uuid5(uuid.NAMESPACE_URL, session_id).hex * 2,
        "state": state.value,
        "driver_id": "driver-1",
        "driver_address": "0x" + "11" * 20,
        "idempotency_key": session_id,
        "cpo_id": CPO_ID,
        "station_id": "0x" + "22" * 32,
        "charge_point_id": "CP-1",
        "connector_id": 1,
        "id_token": "TOKEN",
        "max_amount": 1_000,
        "expiry": datetime.now(UTC) + timedelta(hours=2),
        "request": json.dumps({"tariff": TARIFF, "time_zone": "UTC"}),
    }
    return SessionRow(**(values | fields))


def charging_session(
    db: Database,
    max_amount: int,
    started_at: datetime,
    readings: Sequence[tuple[datetime, int, int | None]],
) -> str:
    """A session in CHARGING, as ``SessionStarted`` and its meter values leave it: ``readings``
    are (measured at, Wh, W), the first the start reading. Returns its id."""
    session_id = uuid.uuid4().hex
    with db.session() as session:
        session.add(
            session_row(
                session_id,
                State.CHARGING,
                max_amount=max_amount,
                transaction_id="7",
                started_at=started_at,
                cost_so_far=0,
                signed_meter_data="[]",
            )
        )
        session.flush()
        session.add_all(
            MeterSampleRow(
                session_id=session_id,
                kind="meter" if index else "start",
                measured_at=at,
                energy_wh=energy_wh,
                power_w=power_w,
            )
            for index, (at, energy_wh, power_w) in enumerate(readings)
        )
    return session_id


def expected_price(energy_wh: int) -> int:
    """(0.50 + 0.40 x kWh) x 1.19, rounded half up to cents, in token units: computed here from
    the tariff's figures, independently of the engine."""
    euros = (Decimal("0.50") + Decimal("0.40") * Decimal(energy_wh) / 1000) * Decimal("1.19")
    cents = euros.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
    return int(cents * 1_000_000)


class LockedTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe; the signer, the escrow and the test share one chain."""

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


async def wait_async(what: str, probe: Callable[[], T | None], within: float = 20.0) -> T:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def escrow_callers(token: str = ESCROW_TOKEN) -> dict[str, Any]:
    return {"escrow": escrow_caller(token, ["operator.*"])}


def contracts_json(deployment: Deployment) -> str:
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


@dataclass
class Rig:
    w3: Web3
    deployment: Deployment
    bus: InMemoryBus
    db: Database
    escrow: EscrowService
    admin: str
    cpo: str
    station_id: bytes
    drivers: list[LocalAccount] = field(default_factory=list)
    chain_sessions: list[bytes] = field(default_factory=list)

    def driver(self, deposit: int) -> LocalAccount:
        """A new driver with ``deposit`` token units in its escrow balance."""
        driver: LocalAccount = Account.create()
        token, escrow = self.deployment.token, self.deployment.escrow
        send(self.w3, token.functions.mint(driver.address, deposit), self.admin)
        self.w3.eth.send_transaction(
            {"from": self.admin, "to": driver.address, "value": Wei(10**17)}
        )
        send(self.w3, escrow.functions.deposit(deposit), driver)
        self.drivers.append(driver)
        return driver

    def request(
        self,
        driver: LocalAccount,
        nonce: int,
        maximum: int,
        charge_point_id: str,
        *,
        id_token: str = "TOKEN-1",
        expiry_seconds: int = 3600,
        idempotency_key: str | None = None,
        tariff: dict[str, Any] | None = None,
        station_id: str | None = None,
        authorisation_r: str | None = None,
    ) -> str:
        """Publish a session request signed by ``driver``; returns the session id.
        ``station_id`` replaces the registry id in the request (not in what the driver signed),
        ``authorisation_r`` the signature's first half."""
        chain_now = int(self.w3.eth.get_block("latest")["timestamp"])
        expiry = chain_now + expiry_seconds
        auth = sign_open_session(
            driver,
            chain_id=self.w3.eth.chain_id,
            escrow=self.deployment.escrow.address,
            nonce=nonce,
            station_id=self.station_id,
            maximum=maximum,
            expiry=expiry,
        )
        self.chain_sessions.append(auth.session_id)
        session_id = str(uuid.uuid4())
        self.publish(
            SessionRequested(
                session_id=session_id,
                driver_id=f"driver-{driver.address[2:10].lower()}",
                driver_address=driver.address,
                cpo_id=CPO_ID,
                station_id=station_id or "0x" + self.station_id.hex(),
                charge_point_id=charge_point_id,
                connector_id=1,
                max_amount=maximum,
                id_token=id_token,
                idempotency_key=idempotency_key or uuid.uuid4().hex,
                chain_session_id="0x" + auth.session_id.hex(),
                driver_nonce=nonce,
                expiry=datetime.fromtimestamp(expiry, UTC),
                authorisation_r=authorisation_r or "0x" + auth.r.hex(),
                authorisation_vs="0x" + auth.vs.hex(),
                tariff=tariff or TARIFF,
                time_zone="Europe/Berlin",
            ),
            session_id,
        )
        return session_id

    def publish(self, data: EventData, subject: str) -> Envelope:
        envelope = make_envelope(data, subject=subject, source="tests/escrow")
        self.bus.publish(data.topic, envelope)
        return envelope

    def row(self, session_id: str) -> SessionRow | None:
        with self.db.session() as session:
            return session.get(SessionRow, session_id)

    def state(self, session_id: str) -> str | None:
        row = self.row(session_id)
        return row.state if row is not None else None

    async def reach(self, session_id: str, state: str, within: float = 20.0) -> SessionRow:
        try:
            await wait_async(
                f"{session_id} in {state}", lambda: self.state(session_id) == state, within
            )
        except AssertionError as timeout:
            raise AssertionError(f"{timeout}; {self.whereabouts(session_id)}") from None
        row = self.row(session_id)
        assert row is not None
        return row

    def whereabouts(self, session_id: str) -> str:
        """Where a session that did not arrive is: its row, its events and its chain ops."""
        row = self.row(session_id)
        if row is None:
            return "no row"
        with self.db.session() as session:
            ops = [
                f"{op.id} {op.status} {op.error or ''}".strip()
                for op in session.scalars(sa.select(ChainOp))
                if session_id in op.session_ids()
            ]
        events = [e.type for e in self.events(session_id)]
        return f"state {row.state} ({row.reason}); events {events}; operations {ops}"

    def events(self, session_id: str, suffix: str = "") -> list[Envelope]:
        return [
            e
            for e in self.bus.events("sessions")
            if e.subject == session_id and e.type.endswith(suffix)
        ]

    def deposit(self, address: str) -> int:
        return int(self.deployment.escrow.functions.depositOf(address).call())

    def check_invariants(self) -> dict[str, int]:
        """Tokens conserved (supply = wallets + deposits + locked) and nothing left open."""
        token, escrow = self.deployment.token.functions, self.deployment.escrow.functions
        holders = [d.address for d in self.drivers] + [self.cpo]
        supply = int(token.totalSupply().call())
        wallets = sum(int(token.balanceOf(a).call()) for a in holders)
        deposits = sum(int(escrow.depositOf(a).call()) for a in holders)
        locked = 0
        for chain_session in self.chain_sessions:
            state, _driver, _index, maximum, _expiry = escrow.sessionOf(chain_session).call()
            if SessionState(int(state)) is SessionState.OPEN:
                locked += int(maximum)
        held = int(token.balanceOf(self.deployment.escrow.address).call())
        assert held == deposits + locked, (held, deposits, locked)
        assert supply == wallets + deposits + locked, (supply, wallets, deposits, locked)
        with self.db.session() as session:
            open_rows = session.execute(
                sa.select(SessionRow.session_id, SessionRow.state).where(
                    SessionRow.state.not_in([s.value for s in FINAL])
                )
            ).all()
        assert not open_rows, f"sessions left in a non-final state: {open_rows}"
        assert locked == 0, f"{locked} token units still locked"
        return {"supply": supply, "wallets": wallets, "deposits": deposits, "locked": locked}


@contextmanager
def rig(tmp: Path, **escrow_overrides: Any) -> Iterator[Rig]:
    provider = LockedTesterProvider()
    w3 = Web3(provider)
    accounts = list(w3.eth.accounts)
    admin, cpo = accounts[0], accounts[1]
    relayer, operator = Account.create(), Account.create()
    deployment = deploy_chargenet(w3, admin=admin, minter=admin)
    tariff = Tariff.model_validate(TARIFF)
    station_id = keccak(text="DE*CNT*S0001")
    info = StationInfo(
        latitude_e6=52_520_008,
        longitude_e6=13_404_954,
        connector_count=2,
        max_power_w=22_000,
        tariff_id=keccak(text=tariff.id),
        tariff_hash=tariff_hash(TARIFF),
        meter_key_hash=keccak(text="no meter key in these tests"),
    )
    send(
        w3,
        deployment.registry.functions.register(station_id, info.as_tuple(), [operator.address]),
        cpo,
    )
    keys = {"relayer": relayer, f"operator.{CPO_ID}": operator}
    signer_settings = SignerSettings(
        database_url=f"sqlite:///{tmp}/signer.db",
        signer_listen="127.0.0.1:0",
        signer_keys=",".join(f"{a}=0x{bytes(k.key).hex()}" for a, k in keys.items()),
        signer_callers=json.dumps(escrow_callers()),
        signer_contracts=contracts_json(deployment),
        signer_confirmations=1,
        signer_poll_seconds=0.05,
        log_level="WARNING",
    )
    bus = InMemoryBus(partitions=4)
    with ExitStack() as stack:
        signer_url = stack.enter_context(running_signer(signer_settings, provider)).url
        signer = stack.enter_context(SignerClient(signer_url, ESCROW_TOKEN))
        db = Database(f"sqlite:///{tmp}/escrow.db")
        stack.callback(db.dispose)
        migrate(db)
        fields: dict[str, Any] = {
            "escrow_address": deployment.escrow.address,
            "escrow_open_window_seconds": 0.2,
            "escrow_settle_delay_seconds": 0.2,
            "escrow_sweep_seconds": 0.2,
            "log_json": False,
        }
        fields.update(escrow_overrides)
        service = EscrowService(EscrowSettings(**fields), db, bus, w3=w3, signer=signer)
        service.start()
        stack.callback(service.stop)
        yield Rig(w3, deployment, bus, db, service, admin, cpo, station_id)
