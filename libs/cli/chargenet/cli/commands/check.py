"""``chargenet check``: validate configuration and reach every dependency, then exit.

Run as an init container or before a deploy: a bad setting or an unreachable broker or database
is reported as one line naming the setting, with exit code 2.
"""

from __future__ import annotations

import argparse

from sqlalchemy.exc import SQLAlchemyError

from chargenet.core.bus import create_bus
from chargenet.core.db import Database
from chargenet.core.settings import CoreSettings, fail, load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("check", help="validate configuration and reach dependencies")
    parser.set_defaults(handler=_check)


def _check(_args: argparse.Namespace) -> int:
    settings = load_settings(CoreSettings)
    bus = create_bus(settings)
    bus.close()
    db = Database(settings.database_url)
    try:
        db.check()
    except SQLAlchemyError as error:
        raise fail(f"CHARGENET_DATABASE_URL: the database does not answer ({error.code})") from None
    finally:
        db.dispose()
    print(f"configuration ok: bus={settings.bus} database={db.engine.dialect.name}")
    return 0
