"""Assembling the signer from its settings: database, keys, policy, chain, engine, gRPC server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from chargenet.core.db import Database
from chargenet.core.db.migrations import upgrade_to_head
from chargenet.core.signer_client._generated import signer_pb2_grpc
from chargenet.signer.abi import ContractRegistry
from chargenet.signer.engine import Engine, EngineConfig
from chargenet.signer.fees import FeePolicy
from chargenet.signer.keys import load_key_ring
from chargenet.signer.migrations import VERSIONS
from chargenet.signer.policy import Policy
from chargenet.signer.rpc import Rpc, transport_for
from chargenet.signer.service import SignerService
from chargenet.signer.settings import SignerSettings
from chargenet.signer.store import SignerStore
from chargenet.signer.tracker import Tracker

log = logging.getLogger(__name__)

SERVICE_NAME = "chargenet.signer.v1.SignerService"
#: When the node cannot say (eth-tester), 1 gwei.
DEFAULT_TIP = 10**9
#: What a development key gets from the in-process chain's funded accounts: 1,000 ETH.
DEV_FUNDING_WEI = 1000 * 10**18


def server_credentials(settings: SignerSettings) -> grpc.ServerCredentials | None:
    """TLS from the settings' files (client certificates required if a client CA is given)."""
    if settings.signer_tls_cert_file is None or settings.signer_tls_key_file is None:
        return None
    client_ca = settings.signer_tls_client_ca_file
    return grpc.ssl_server_credentials(
        [(settings.signer_tls_key_file.read_bytes(), settings.signer_tls_cert_file.read_bytes())],
        root_certificates=None if client_ca is None else client_ca.read_bytes(),
        require_client_auth=client_ca is not None,
    )


class SignerApp:
    """One running signer. ``provider`` is an in-process chain to share (the embedded default);
    without it, ``chain_rpc_url`` names the node."""

    def __init__(self, settings: SignerSettings, *, provider: Any = None) -> None:
        self.settings = settings
        self._provider = provider
        self.port = 0
        self.engine: Engine | None = None
        self._server: grpc.aio.Server | None = None
        self._tracker: Tracker | None = None
        self._health = health.aio.HealthServicer() if hasattr(health, "aio") else None

    async def start(self) -> int:
        settings = self.settings
        db = Database.from_settings(settings)
        await asyncio.to_thread(upgrade_to_head, db, VERSIONS)
        keys = load_key_ring(settings)
        policy = Policy.from_json(settings.signer_callers.get_secret_value())
        contracts = ContractRegistry.from_json(settings.signer_contracts, base=Path.cwd())
        provider = self._provider
        if provider is None and settings.chain_rpc_url.startswith("inprocess"):
            provider = inprocess_provider()
        rpc = Rpc(transport_for(settings.chain_rpc_url, provider))
        chain_id = settings.signer_chain_id or int(await rpc.call("eth_chainId"), 16)
        tip = settings.signer_priority_fee_wei or await _node_tip(rpc)
        if provider is not None and settings.signer_fund_dev_keys:
            await _fund(rpc, [key.address for key in keys.all()])
        config = EngineConfig(
            chain_id=chain_id,
            fees=FeePolicy(tip, settings.signer_max_fee_cap_wei, settings.signer_fee_bump_percent),
            confirmations=settings.signer_confirmations,
            stuck_after=settings.signer_stuck_after_seconds,
            poll_seconds=settings.signer_poll_seconds,
            batch_size=settings.signer_batch_size,
            max_in_flight=settings.signer_max_in_flight,
            gas_margin_percent=settings.signer_gas_margin_percent,
            lane_idle_seconds=settings.signer_lane_idle_seconds,
        )
        engine = Engine(SignerStore(db), rpc, keys, config)
        for name in contracts.names():
            engine.errors.update(contracts.get(name).errors)
        await engine.recover()
        self.engine = engine
        self._tracker = Tracker(engine)
        self._tracker.start()

        server = grpc.aio.server(
            options=[("grpc.so_reuseport", 0), ("grpc.max_concurrent_streams", 1000)]
        )
        signer_pb2_grpc.add_SignerServiceServicer_to_server(  # type: ignore[no-untyped-call]
            SignerService(engine, policy, contracts, max_data_bytes=settings.signer_max_data_bytes),
            server,
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        credentials = server_credentials(settings)
        if credentials is None:
            self.port = server.add_insecure_port(settings.signer_listen)
        else:
            self.port = server.add_secure_port(settings.signer_listen, credentials)
        if self.port == 0:
            raise OSError(f"signer_listen: cannot listen on {settings.signer_listen}")
        await server.start()
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        log.info(
            "signer listening on port %d: chain %d, %d keys, %d contracts",
            self.port,
            chain_id,
            len(keys.all()),
            len(contracts.names()),
        )
        return self.port

    def check(self) -> None:
        """Readiness: the engine runs and its tracker has not died."""
        if self.engine is None or self._tracker is None:
            raise RuntimeError("the signer has not started")

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
        if self._tracker is not None:
            await self._tracker.stop()
        if self.engine is not None:
            await self.engine.aclose()
            await self.engine.rpc.aclose()
            self.engine.store.db.dispose()


def inprocess_provider() -> Any:
    from web3.providers.eth_tester import EthereumTesterProvider

    return EthereumTesterProvider()


async def _node_tip(rpc: Rpc) -> int:
    try:
        return max(1, int(await rpc.call("eth_maxPriorityFeePerGas"), 16))
    except Exception:  # not every node implements it; a fixed tip is fine for those
        return DEFAULT_TIP


def _wei(balance: object) -> int:
    return int(balance, 16) if isinstance(balance, str) else 0


async def _fund(rpc: Rpc, addresses: list[str]) -> None:
    """Development only: give each key ether from the in-process chain's unlocked accounts."""
    accounts = await rpc.call("eth_accounts")
    if not accounts:
        return
    # The richest unlocked account pays: a long-lived development node serves many stacks, and
    # always drawing on the first account emptied it.
    held = await rpc.batch([("eth_getBalance", [a, "latest"]) for a in accounts])
    funder = max(zip(accounts, held, strict=True), key=lambda pair: _wei(pair[1]))[0]
    balances = await rpc.batch([("eth_getBalance", [a, "latest"]) for a in addresses])
    for address, balance in zip(addresses, balances, strict=True):
        if isinstance(balance, str) and int(balance, 16) == 0:
            await rpc.call(
                "eth_sendTransaction",
                {
                    "from": funder,
                    "to": address,
                    "value": hex(DEV_FUNDING_WEI),
                    "gas": hex(21000),
                },
            )
