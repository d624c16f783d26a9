"""Waking a session's live streams when the session changed.

A stream sends the session row as it is in the database, where every replica's consumer writes.
It re-reads the row only when woken: at once by a change this process committed (its consumer,
a stop request), and by one poller per process that reads the versions of all watched sessions
in one query every ``wallet_stream_poll_seconds`` (what another replica applied). So a hundred
open streams cost one query per interval, not a hundred. A change committed here hands over the
committed row too (``latest``): the stream sends it without reading it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from chargenet.core.db import Database
from chargenet.core.db.database import among
from chargenet.wallet.models import ChargingSession

log = logging.getLogger(__name__)
#: Session ids per ``IN (...)`` of the version poll.
_IDS_PER_QUERY = 500
#: Every poll runs it: built once, only the ids change.
_VERSIONS = sa.select(ChargingSession.session_id, ChargingSession.version).where(
    among(ChargingSession.session_id, "ids")
)


class SessionSignals:
    def __init__(self, db: Database | None = None, poll_seconds: float = 0.25) -> None:
        self._db = db
        self._poll = poll_seconds
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()
        #: The newest version of each watched session that its streams have (sent, or handed
        #: over by a commit here): the poller wakes them only for a newer one.
        self._known: dict[str, int] = {}
        #: The newest row committed in this process, per watched session (see ``latest``).
        self._latest: dict[str, ChargingSession] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, session_id: str) -> Iterator[asyncio.Event]:
        """An event set (on the caller's loop) whenever the session changes."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(session_id, set()).add(waiter)
        try:
            yield waiter[1]
        finally:
            with self._lock:
                waiters = self._waiters.get(session_id)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[session_id]
                        self._latest.pop(session_id, None)
                        self._known.pop(session_id, None)

    def committed(self, rows: Iterable[ChargingSession]) -> None:
        """These rows were just committed in this process: keep them for their streams (which
        send them without reading them back) and wake those streams."""
        rows = list(rows)
        with self._lock:
            for row in rows:
                if row.session_id in self._waiters:
                    kept = self._latest.get(row.session_id)
                    if kept is None or kept.version < row.version:
                        self._latest[row.session_id] = row
                    self._remember(row.session_id, row.version)
        self.notify(row.session_id for row in rows)

    def seen(self, session_id: str, version: int) -> None:
        """A stream has this version of the session (it read or sent it)."""
        with self._lock:
            if session_id in self._waiters:
                self._remember(session_id, version)

    def _remember(self, session_id: str, version: int) -> None:
        if version > self._known.get(session_id, -1):
            self._known[session_id] = version

    def notify(self, session_ids: Iterable[str]) -> None:
        """Wake the streams of these sessions; called from any thread after a commit."""
        with self._lock:
            woken = [w for s in set(session_ids) for w in self._waiters.get(s, ())]
        for loop, event in woken:
            # A closed loop raises: its stream is gone, nobody is left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def latest(self, session_id: str) -> ChargingSession | None:
        """The newest row of a watched session that this process committed, if any. Versions
        only grow, so a stream that has sent this version or a newer one reads the database."""
        with self._lock:
            return self._latest.get(session_id)

    # -- the poller ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._db is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wallet-stream-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.poll_once()
            except Exception:
                log.exception("polling the watched sessions' versions failed; next poll retries")

    def poll_once(self) -> None:
        """Wake the streams whose session has a version newer than they have (what another
        replica applied; a change committed here has woken them already)."""
        assert self._db is not None
        with self._lock:
            watched = list(self._waiters)
        changed: list[str] = []
        for start in range(0, len(watched), _IDS_PER_QUERY):
            with self._db.session() as session:
                rows = session.execute(
                    _VERSIONS, {"ids": watched[start : start + _IDS_PER_QUERY]}
                ).all()
            with self._lock:
                changed += [s for s, v in rows if v > self._known.get(s, -1)]
        if changed:
            self.notify(changed)
