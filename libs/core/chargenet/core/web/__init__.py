"""What chargenet's server-rendered pages share: one stylesheet, served by each service that has
pages under its own prefix (an ingress routes ``/app`` and ``/console`` to different services)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

SHARED_STATIC = Path(__file__).parent / "static"


def mount_shared_static(app: FastAPI, prefix: str) -> None:
    """Serve the shared assets at ``<prefix>/shared/`` (``base.css``)."""
    app.mount(f"{prefix}/shared", StaticFiles(directory=SHARED_STATIC), name=f"{prefix}-shared")
