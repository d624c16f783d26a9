"""``chargenet migrate SERVICE``: bring a service's database to the newest schema, then exit.

Deployments run it as a pre-install/pre-upgrade Job, so a service never starts on a schema older
than its code.
"""

from __future__ import annotations

import argparse

from chargenet.cli.commands.check import uses_database
from chargenet.cli.commands.run import SERVICES
from chargenet.core.db import Database
from chargenet.core.db.migrations import service_versions, upgrade_to_head
from chargenet.core.settings import CoreSettings, fail, load_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("migrate", help="apply a service's database migrations")
    parser.add_argument("service", choices=SERVICES)
    parser.set_defaults(handler=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    if not uses_database(args.service):
        # Its core tables would be made in whatever database the URL names, for nothing.
        raise fail(f"the {args.service} keeps no database: nothing to migrate")
    settings = load_settings(CoreSettings)
    db = Database(settings.database_url)
    try:
        upgrade_to_head(db, service_versions(args.service))
    finally:
        db.dispose()
    print(f"{args.service}: database at head ({db.engine.dialect.name})")
    return 0
