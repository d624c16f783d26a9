"""Domain errors. Each knows its HTTP status; ``chargenet.core.http`` maps them in one place."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def reasons(problems: Iterable[Mapping[str, Any]], most: int | None = None) -> str:
    """A validation's problems (pydantic's ``errors()``) as one readable line, ``where: what``
    each; the first ``most`` of them if given."""
    listed = list(problems)[:most]
    return "; ".join(
        f"{'.'.join(str(part) for part in problem.get('loc', ()))}: {problem.get('msg', '')}"
        for problem in listed
    )


class DependencyUnavailable(Exception):
    """A component this service depends on (the chain node, a database) did not answer. The
    work itself is fine: it waits for the component instead of being refused as bad or, by a
    consumer, dead-lettered as poison."""


class ChargenetError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ChargenetError):
    status_code = 404
    code = "not_found"


class Forbidden(ChargenetError):
    status_code = 403
    code = "forbidden"


class Unauthorized(ChargenetError):
    status_code = 401
    code = "unauthorized"


class Conflict(ChargenetError):
    status_code = 409
    code = "conflict"


class Unprocessable(ChargenetError):
    status_code = 422
    code = "unprocessable"
