"""The wallet's Alembic branch (label ``wallet``), on top of the core revisions."""

from pathlib import Path

VERSIONS = Path(__file__).parent / "versions"
