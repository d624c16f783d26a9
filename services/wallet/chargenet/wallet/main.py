"""``chargenet-wallet`` / ``chargenet run wallet``: the wallet service.

One process runs the REST API (uvicorn), the ``sessions`` consumer (the bus's consumer thread)
and the outbox relay (a thread). See :mod:`chargenet.wallet.app` to start it in process.
"""

from __future__ import annotations

from chargenet.core import logging as core_logging
from chargenet.core.bus import create_bus
from chargenet.core.chain import connect
from chargenet.core.db import Database
from chargenet.core.http import serve
from chargenet.core.settings import (
    ConfigurationError,
    exit_on_configuration_error,
    fail,
    load_settings,
)
from chargenet.core.signer_client import signer_client
from chargenet.wallet.app import create_app, migrate
from chargenet.wallet.registry_client import RegistryClient
from chargenet.wallet.settings import WalletSettings


def main() -> int:
    try:
        settings = load_settings(WalletSettings)
        core_logging.configure(settings.log_level, json_lines=settings.log_json, service="wallet")
        try:
            settings.require_contracts()
        except ValueError as error:
            raise fail(str(error)) from None
        try:
            w3 = connect(settings.chain_rpc_url)
        except (ConnectionError, ValueError) as error:
            raise fail(f"CHARGENET_CHAIN_RPC_URL: {error}") from None
        db = Database.from_settings(settings)
        migrate(db)
        bus = create_bus(settings)
        signer = signer_client(settings)
        registry = RegistryClient.connect(
            settings.wallet_registry_url, settings.wallet_registry_timeout_seconds
        )
        app = create_app(settings, bus, db, signer, registry, w3=w3)
    except ConfigurationError as error:
        exit_on_configuration_error(error)
        return 2
    try:
        serve(app, settings.http_host, settings.http_port)
    finally:
        registry.close()
        signer.close()
        bus.close()
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
