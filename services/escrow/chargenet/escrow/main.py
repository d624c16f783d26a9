"""``chargenet-escrow`` / ``chargenet run escrow``: the escrow orchestrator."""

from __future__ import annotations

from chargenet.core import logging as core_logging
from chargenet.core.bus import create_bus
from chargenet.core.db import Database
from chargenet.core.http import serve
from chargenet.core.settings import ConfigurationError, exit_on_configuration_error, load_settings
from chargenet.escrow.app import EscrowService, create_app, migrate
from chargenet.escrow.settings import EscrowSettings


def main() -> int:
    try:
        settings = load_settings(EscrowSettings)
        core_logging.configure(settings.log_level, json_lines=settings.log_json, service="escrow")
        db = Database.from_settings(settings)
        migrate(db)
        bus = create_bus(settings)
        service = EscrowService(settings, db, bus)
        app = create_app(service)
    except ConfigurationError as error:
        exit_on_configuration_error(error)
        return 2
    try:
        serve(app, settings.http_host, settings.http_port)
    finally:
        bus.close()
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
