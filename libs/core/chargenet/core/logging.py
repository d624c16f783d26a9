"""Structured logs: one JSON object per line, with the session id carried in context.

``bind(session_id=...)`` in a handler makes every log line it causes carry the id, across awaits
and threads started with ``contextvars.copy_context``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "chargenet_log_context", default=None
)


def current() -> dict[str, Any]:
    """The fields bound in this context."""
    return _context.get() or {}


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    token = _context.set({**current(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **current(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ContextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, still carrying the bound context."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = current()
        if context:
            line += " " + " ".join(f"{k}={v}" for k, v in context.items())
        return line


def configure(level: str = "INFO", *, json_lines: bool = True, service: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(ContextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if service:
        _context.set({**current(), "service": service})
    # librdkafka reports every reconnect; a service's own lines matter more.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
