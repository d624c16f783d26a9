"""Alembic, driven from code: the core revisions plus one service's own branch."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config

from chargenet.core.db.database import Database

CORE_MIGRATIONS = Path(__file__).parent


def service_versions(service: str) -> Path | None:
    """Where ``chargenet.<service>`` keeps its migration branch, by convention, if it has one."""
    spec = importlib.util.find_spec(f"chargenet.{service}")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"no service package chargenet.{service}")
    versions = Path(next(iter(spec.submodule_search_locations))) / "migrations" / "versions"
    return versions if versions.is_dir() else None


def alembic_config(db: Database, service_versions: Path | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(CORE_MIGRATIONS))
    locations = [str(CORE_MIGRATIONS / "versions")]
    if service_versions is not None:
        locations.append(str(service_versions))
    config.set_main_option("version_locations", " ".join(locations))
    config.set_main_option("path_separator", "space")
    config.attributes["engine"] = db.engine
    return config


def upgrade_to_head(db: Database, service_versions: Path | None = None) -> None:
    """Bring the database from any earlier state (including empty) to every branch's head."""
    command.upgrade(alembic_config(db, service_versions), "heads")


def downgrade_to_base(db: Database, service_versions: Path | None = None) -> None:
    command.downgrade(alembic_config(db, service_versions), "base")
