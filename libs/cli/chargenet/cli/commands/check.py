"""``chargenet check``: validate configuration and reach every dependency, then exit.

Run as an init container or before a deploy: a bad setting or an unreachable broker or database
is reported as one line naming the setting, with exit code 2. The core settings are checked as
the service named by ``CHARGENET_SERVICE_NAME`` has them: a service that keeps no database (the
gateway) is neither asked for one nor checked against one.
"""

from __future__ import annotations

import argparse
import importlib
from typing import ClassVar

from pydantic_settings import BaseSettings
from sqlalchemy.exc import SQLAlchemyError

from chargenet.cli.commands.run import SERVICES
from chargenet.core.bus import create_bus
from chargenet.core.db import Database
from chargenet.core.settings import CoreSettings, fail, load_settings


class _ServiceName(BaseSettings):
    """``CHARGENET_SERVICE_NAME`` alone: whose core settings to check."""

    model_config = CoreSettings.model_config
    service_name: str = CoreSettings.model_fields["service_name"].default


class _CoreSettingsWithoutDatabase(CoreSettings):
    uses_database: ClassVar[bool] = False


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("check", help="validate configuration and reach dependencies")
    parser.set_defaults(handler=_check)


def settings_class(service: str) -> type[CoreSettings]:
    """A service's own settings class: ``<Service>Settings`` in ``chargenet.<service>.settings``
    (imported by name, so the CLI loads only the service it is asked about)."""
    module = importlib.import_module(f"chargenet.{service}.settings")
    own: type[CoreSettings] = getattr(module, f"{service.capitalize()}Settings")
    return own


def uses_database(service: str) -> bool:
    """What the service's own settings class says; only the class is read, not its settings."""
    if service not in SERVICES:
        return CoreSettings.uses_database
    return settings_class(service).uses_database


def _check(_args: argparse.Namespace) -> int:
    service = _ServiceName().service_name
    with_database = uses_database(service)
    settings = load_settings(CoreSettings if with_database else _CoreSettingsWithoutDatabase)
    bus = create_bus(settings)
    bus.close()
    if not with_database:
        print(f"configuration ok: bus={settings.bus} database=none (the {service} has none)")
        return 0
    db = Database(settings.database_url)
    try:
        db.check()
    except SQLAlchemyError as error:
        raise fail(f"CHARGENET_DATABASE_URL: the database does not answer ({error.code})") from None
    finally:
        db.dispose()
    print(f"configuration ok: bus={settings.bus} database={db.engine.dialect.name}")
    return 0
