"""2.0.1 transactions still waiting for something before their session can be billed.

A cable may be plugged in before the driver's token is known: such a transaction's first
register reading is kept, as it becomes the meter start of the session a later token binds it
to. A station may also send no reading before or with the token: the session's ``started``
event then waits for the transaction's first reading (``handlers201`` says why). Both live
in the replica that saw them; only the event loop (the handlers) touches them, so no lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

#: Transactions that neither get a token nor end here (the station reset, or went on through
#: another replica) must not pile up: beyond this many, the oldest are forgotten first.
LIMIT = 100_000

Key = tuple[str, str]  # (charge point id, transaction id)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PendingStart:
    """A transaction bound to its session before any register reading of it was seen."""

    session_id: str
    connector_id: int
    started_at: datetime


class WaitingTransactions:
    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        #: Transactions without a session yet -> their first register reading, if one came.
        self._first: dict[Key, int | None] = {}
        self._starts: dict[Key, PendingStart] = {}

    def __len__(self) -> int:
        return len(self._first) + len(self._starts)

    def __contains__(self, key: Key) -> bool:
        return key in self._first or key in self._starts

    def seen(self, charge_point_id: str, transaction_id: str, energy_wh: int | None) -> None:
        """An event of a transaction without a session, with its reading (None: none)."""
        key = (charge_point_id, transaction_id)
        if key not in self._first:
            _add(self._first, key, energy_wh, self._limit)
        elif self._first[key] is None:
            self._first[key] = energy_wh

    def first_reading(self, charge_point_id: str, transaction_id: str) -> int | None:
        """The transaction got its session: its first reading before that, if any."""
        return self._first.pop((charge_point_id, transaction_id), None)

    def start_later(self, charge_point_id: str, transaction_id: str, start: PendingStart) -> None:
        _add(self._starts, (charge_point_id, transaction_id), start, self._limit)

    def start_now(self, charge_point_id: str, transaction_id: str) -> PendingStart | None:
        """The start waiting for a reading, now that one came."""
        if not self._starts:
            return None
        return self._starts.pop((charge_point_id, transaction_id), None)

    def ended(self, charge_point_id: str, transaction_id: str) -> None:
        key = (charge_point_id, transaction_id)
        self._first.pop(key, None)
        self._starts.pop(key, None)


def _add(entries: dict[Key, T], key: Key, value: T, limit: int) -> None:
    entries[key] = value
    if len(entries) > limit:
        del entries[next(iter(entries))]
