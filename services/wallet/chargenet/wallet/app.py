"""Assembling the wallet: ``create_app(settings, bus, db, signer, registry)``.

Starting it in process (tests, the embedded default)::

    from chargenet.wallet.app import create_app, migrate
    from chargenet.wallet.registry_client import RegistryClient
    from chargenet.wallet.payments import TestPaymentProvider

    db = Database(url); migrate(db)
    app = create_app(
        settings,                                  # WalletSettings: contract addresses at least
        bus,                                       # the same EventBus the escrow uses
        db,
        SignerClient(signer_url, token),           # a caller allowed the keys below
        RegistryClient(TestClient(registry_app)),  # any httpx.Client on the registry
        w3=Web3(provider),                         # share the in-process chain; else from settings
        payments=TestPaymentProvider(),            # the default
    )
    with TestClient(app) as client:                # the lifespan starts consumer and relay
        ...

The signer caller needs: the driver keys (``hd/*``, or ``<prefix>*``) with ``sign_typed_data``
and ``ChargingEscrow.withdraw``; the minter key with ``ChargeToken.mint`` and
``ChargeToken.burnFrom``; the relayer key with ``ChargingEscrow.depositWithPermit``,
``ChargeToken.permit`` and ``0x*.fund`` (ether for a driver's payout gas). The contracts must be
registered in the signer as ``ChargeToken`` and ``ChargingEscrow`` (or the names in settings).

The lifespan runs the ``sessions`` consumer (the live view; group ``wallet_consumer_group``), the
outbox relay that publishes ``SessionRequested`` and ``StopRequested``, and the poller that wakes
the live streams of sessions another replica changed (:mod:`chargenet.wallet.signals`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from web3 import Web3

from chargenet.core.bus import EventBus
from chargenet.core.chain import connect
from chargenet.core.db import Database
from chargenet.core.db.migrations import upgrade_to_head
from chargenet.core.db.outbox import OutboxRelay
from chargenet.core.db.retention import Retention
from chargenet.core.events import Topic
from chargenet.core.http import ops_router, rest_app
from chargenet.core.signer_client import SignerClient
from chargenet.wallet.accounts import Accounts
from chargenet.wallet.api import router
from chargenet.wallet.auth import TokenAuthority
from chargenet.wallet.billing import Billing
from chargenet.wallet.chain import ChainReader
from chargenet.wallet.funds import Funds
from chargenet.wallet.migrations import VERSIONS
from chargenet.wallet.payments import PaymentProvider, TestPaymentProvider
from chargenet.wallet.projection import SessionProjection
from chargenet.wallet.registry_client import RegistryClient
from chargenet.wallet.sessions import Sessions
from chargenet.wallet.settings import WalletSettings
from chargenet.wallet.signals import SessionSignals
from chargenet.wallet.web import DriverAppConfig, mount_driver_app


def migrate(db: Database) -> None:
    upgrade_to_head(db, VERSIONS)


def create_app(
    settings: WalletSettings,
    bus: EventBus,
    db: Database,
    signer: SignerClient,
    registry: RegistryClient,
    *,
    w3: Web3 | None = None,
    payments: PaymentProvider | None = None,
    driver_app: DriverAppConfig | None = None,
) -> FastAPI:
    """The wallet's REST app; ``db`` must be migrated (``migrate``).

    ``driver_app``: the driver pages' connections (registry, invoicing, map tiles); None reads
    them from ``CHARGENET_WEB_*`` (see :mod:`chargenet.wallet.web`).
    """
    settings.require_contracts()
    chain = ChainReader(
        w3 if w3 is not None else connect(settings.chain_rpc_url),
        settings.wallet_token_address,
        settings.wallet_escrow_address,
        cache_seconds=settings.wallet_balance_cache_seconds,
    )
    relay = OutboxRelay(db, bus, retention=Retention.of(settings))
    signals = SessionSignals(db, settings.wallet_stream_poll_seconds)
    projection = SessionProjection(db, signals)
    sessions_topic = Topic.SESSIONS.value

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        bus.ensure_topics([sessions_topic])
        subscription = bus.subscribe(
            [sessions_topic],
            settings.wallet_consumer_group,
            projection,
            batch_handler=projection.batch,
            types=SessionProjection.TYPES,
        )
        relay.start(settings.outbox_poll_seconds)
        signals.start()
        try:
            yield
        finally:
            signals.stop()
            subscription.close()
            relay.stop()
            app.state.sessions.close()
            await app.state.driver_app.config.aclose()

    app = rest_app("chargenet wallet", lifespan)
    app.state.settings = settings
    app.state.db = db
    app.state.chain = chain
    app.state.relay = relay
    app.state.projection = projection
    app.state.signals = signals
    app.state.tokens = TokenAuthority(settings)
    app.state.accounts = Accounts(settings, db, signer)
    app.state.funds = Funds(
        settings, db, signer, chain, payments if payments is not None else TestPaymentProvider()
    )
    app.state.billing = Billing(db, settings.wallet_default_billing_country)
    app.state.sessions = Sessions(settings, db, signer, chain, registry, app.state.billing, signals)

    def chain_answers() -> None:
        chain.w3.eth.get_block("latest")

    app.include_router(
        ops_router({"database": db.check, "chain": chain_answers, "registry": registry.check})
    )
    app.include_router(router)
    # The driver app (issue 11): pages under /app over this app's own API.
    mount_driver_app(
        app, driver_app or DriverAppConfig.from_env(settings), settings.wallet_currency
    )
    return app
