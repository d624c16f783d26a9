"""The signer's Alembic branch (label ``signer``), on top of the core revisions."""

from pathlib import Path

VERSIONS = Path(__file__).parent / "versions"
