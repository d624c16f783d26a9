"""Every service in this process: the embedded default behind ``chargenet demo``.

One py-evm chain shared by all (behind a lock: eth-tester is not thread-safe), the in-process bus,
one SQLite file per service under a work directory, the signer's gRPC server on its own event loop,
and one more loop serving the REST apps (uvicorn), the escrow's ops app and one gateway per CPO.
Each service is built by its own factory from settings the :class:`Plan` wrote, exactly as its
``main`` would; nothing here reaches into a service's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from chargenet.cli.network.plan import Cpo, Plan, Ports, fresh_keys, fresh_tokens
from chargenet.core.bus.memory import InMemoryBus
from chargenet.core.chain import Deployment, deploy_chargenet
from chargenet.core.db import Database
from chargenet.core.http import KEEP_ALIVE_SECONDS, limit_recursion
from chargenet.core.signer_client import SignerClient

log = logging.getLogger(__name__)
T = TypeVar("T")


class LockedTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe; the signer, indexer, wallet and escrow all share it."""

    _lock = threading.RLock()

    def make_request(self, method: Any, params: Any) -> Any:
        with self._lock:
            return super().make_request(method, params)


class LoopThread:
    """An event loop on its own thread; ``run`` blocks the caller until a coroutine is done."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


@dataclass
class Endpoints:
    """Where a running network answers (the same shape for the embedded and distributed one)."""

    wallet: str
    registry: str
    invoicing: str
    escrow: str
    gateways: dict[str, list[str]]  # cpo id -> ws://.../ocpp per replica
    metrics: dict[str, str] = field(default_factory=dict)  # service -> /metrics URL

    def to_json(self) -> dict[str, Any]:
        return {
            "wallet": self.wallet,
            "registry": self.registry,
            "invoicing": self.invoicing,
            "escrow": self.escrow,
            "gateways": self.gateways,
            "metrics": self.metrics,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoints:
        return cls(
            data["wallet"],
            data["registry"],
            data["invoicing"],
            data["escrow"],
            {k: list(v) for k, v in data["gateways"].items()},
            dict(data.get("metrics", {})),
        )


async def _serve(app: FastAPI, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Start a uvicorn server on this loop and wait until it listens (its lifespan ran)."""
    limit_recursion()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it (a taken port, a failed lifespan)
            raise RuntimeError(f"the server on port {port} stopped while starting")
        await asyncio.sleep(0.02)
    return server, task


def _port(server: uvicorn.Server) -> int:
    sockets = server.servers[0].sockets if server.servers else []
    return int(sockets[0].getsockname()[1]) if sockets else server.config.port


class EmbeddedNetwork:
    """``start()`` deploys the contracts and starts every service; ``stop()`` undoes it."""

    def __init__(
        self,
        workdir: Path,
        cpos: tuple[Cpo, ...],
        *,
        ports: Ports | None = None,
        meter_seed: str = "chargenet-demo",
        jwt_secret: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.cpos = cpos
        self.ports = ports or Ports.ephemeral()
        self.meter_seed = meter_seed
        #: The bearer tokens' HS256 secret, fresh per network unless given.
        self.jwt_secret = jwt_secret or secrets.token_urlsafe(32)
        self.provider = LockedTesterProvider()
        self.w3 = Web3(self.provider)
        self.bus = InMemoryBus(partitions=4)
        self.deployment: Deployment | None = None
        self.plan: Plan | None = None
        self.endpoints: Endpoints | None = None
        self._stack = contextlib.ExitStack()
        self._signer_loop: LoopThread | None = None
        self._loop: LoopThread | None = None

    def start(self, progress: Callable[[str], None] = lambda _text: None) -> Endpoints:
        try:
            return self._start(progress)
        except BaseException:
            self.stop()
            raise

    def _start(self, progress: Callable[[str], None]) -> Endpoints:
        from chargenet.signer.app import SignerApp
        from chargenet.signer.settings import SignerSettings

        self.workdir.mkdir(parents=True, exist_ok=True)
        admin = self.w3.eth.accounts[0]
        keys = fresh_keys(self.cpos)
        first_block = int(self.w3.eth.block_number)
        plan = Plan(
            cpos=self.cpos,
            keys=keys,
            tokens=fresh_tokens(),
            ports=self.ports,
            rpc_url="inprocess://eth-tester",
            databases={
                s: f"sqlite:///{self.workdir}/{s}.db"
                for s in ("signer", "registry", "wallet", "escrow", "invoicing")
            },
            meter_seed=self.meter_seed,
            suppliers_file=str(self.workdir / "suppliers.json"),
            jwt_secret=self.jwt_secret,
        )
        self.deployment = deploy_chargenet(self.w3, admin=admin, minter=plan.address_of("minter"))
        plan.contracts = {
            "ChargeToken": self.deployment.token.address,
            "ChargingEscrow": self.deployment.escrow.address,
            "StationRegistry": self.deployment.registry.address,
        }
        plan.first_block = first_block
        self.plan = plan
        Path(plan.suppliers_file or "").write_text(json.dumps(plan.suppliers(), indent=2))
        progress(f"contracts deployed on the in-process chain: {plan.contracts}")

        self._signer_loop = LoopThread("signer")
        signer = SignerApp(SignerSettings(**plan.signer("")), provider=self.provider)
        self._signer_loop.run(signer.start(), timeout=120)
        signer_loop = self._signer_loop
        self._stack.callback(lambda: signer_loop.run(signer.stop(0.5), timeout=30))
        signer_url = f"127.0.0.1:{signer.port}"
        progress(f"signer on {signer_url} (keys: minter, relayer, one per CPO; gRPC)")

        self._loop = LoopThread("services")
        self.endpoints = self._loop.run(self._services(plan, signer_url), timeout=180)
        return self.endpoints

    async def _services(self, plan: Plan, signer_url: str) -> Endpoints:
        from chargenet.escrow.app import EscrowService
        from chargenet.escrow.app import create_app as escrow_app
        from chargenet.escrow.app import migrate as migrate_escrow
        from chargenet.escrow.settings import EscrowSettings
        from chargenet.gateway.credentials import CredentialStore
        from chargenet.gateway.server import Gateway
        from chargenet.gateway.settings import GatewaySettings
        from chargenet.invoicing.main import create_app as invoicing_app
        from chargenet.invoicing.main import migrate as migrate_invoicing
        from chargenet.invoicing.settings import InvoicingSettings
        from chargenet.registry.main import create_app as registry_app
        from chargenet.registry.main import migrate as migrate_registry
        from chargenet.registry.settings import RegistrySettings
        from chargenet.wallet.app import create_app as wallet_app
        from chargenet.wallet.app import migrate as migrate_wallet
        from chargenet.wallet.registry_client import RegistryClient
        from chargenet.wallet.settings import WalletSettings

        stack, bus = self._stack, self.bus
        servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
        loop = self._loop
        assert loop is not None

        def database(url: str, migrate: Callable[[Database], None]) -> Database:
            db = Database(url)
            stack.callback(db.dispose)
            migrate(db)
            return db

        def client(token: str) -> SignerClient:
            return stack.enter_context(SignerClient(signer_url, token))

        async def serve(app: FastAPI, port: int) -> str:
            server, task = await _serve(app, port)
            servers.append((server, task))
            return f"http://127.0.0.1:{_port(server)}"

        registry_settings = RegistrySettings(**plan.registry(signer_url))
        registry_url = await serve(
            registry_app(
                registry_settings,
                bus,
                database(registry_settings.database_url, migrate_registry),
                w3=self.w3,
                signer=client(plan.tokens["registry"]),
            ),
            self.ports.registry,
        )
        wallet_settings = WalletSettings(**plan.wallet(signer_url, registry_url))
        registry_client = RegistryClient.connect(registry_url)
        stack.callback(registry_client.close)
        wallet_url = await serve(
            wallet_app(
                wallet_settings,
                bus,
                database(wallet_settings.database_url, migrate_wallet),
                client(plan.tokens["wallet"]),
                registry_client,
                w3=self.w3,
            ),
            self.ports.wallet,
        )
        escrow_settings = EscrowSettings(**plan.escrow(signer_url))
        escrow = EscrowService(
            escrow_settings,
            database(escrow_settings.database_url, migrate_escrow),
            bus,
            w3=self.w3,
            signer=client(plan.tokens["escrow"]),
        )
        escrow_url = await serve(escrow_app(escrow), self.ports.escrow)
        invoicing_settings = InvoicingSettings(**plan.invoicing())
        invoicing_url = await serve(
            invoicing_app(
                invoicing_settings,
                bus,
                database(invoicing_settings.database_url, migrate_invoicing),
            ),
            self.ports.invoicing,
        )

        gateways: dict[str, list[str]] = {}
        credentials = gateway_credentials(plan)
        running: list[Gateway] = []
        for index, cpo in enumerate(plan.cpos):
            settings = GatewaySettings(**plan.gateway(index, 0, credentials[cpo.cpo_id]))
            gateway = Gateway(settings, bus, CredentialStore.from_json(credentials[cpo.cpo_id]))
            await gateway.start()
            running.append(gateway)
            gateways[cpo.cpo_id] = [f"ws://127.0.0.1:{gateway.port}/ocpp"]

        async def shutdown() -> None:
            for gateway in running:
                await gateway.stop()
            for server, _task in reversed(servers):
                server.should_exit = True
            for _server, task in reversed(servers):
                with contextlib.suppress(Exception):
                    await task

        # Registered last, so it runs first: the servers stop before the clients they use close.
        stack.callback(lambda: loop.run(shutdown(), timeout=60))
        return Endpoints(
            wallet=wallet_url,
            registry=registry_url,
            invoicing=invoicing_url,
            escrow=escrow_url,
            gateways=gateways,
            metrics={
                name: f"{url}/metrics"
                for name, url in (
                    ("wallet", wallet_url),
                    ("registry", registry_url),
                    ("escrow", escrow_url),
                    ("invoicing", invoicing_url),
                )
            },
        )

    def stop(self) -> None:
        try:
            self._stack.close()
        finally:
            for loop in (self._loop, self._signer_loop):
                if loop is not None:
                    loop.close()
            self._loop = self._signer_loop = None
            self.bus.close()


def gateway_credentials(plan: Plan) -> dict[str, str]:
    """Each CPO's gateway admits its own charge points with the simulator's password."""
    from chargenet.cli.network.plan import CP_PASSWORD
    from chargenet.gateway.credentials import hash_password

    hashed = hash_password(CP_PASSWORD)
    return {
        cpo.cpo_id: json.dumps(
            {"charge_points": [{"id": cp, "password_hash": hashed} for cp in cpo.charge_points]}
        )
        for cpo in plan.cpos
    }
