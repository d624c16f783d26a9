"""Locks by key (a driver, a payment reference) inside one wallet process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class KeyedLocks:
    """One lock per key while someone holds or waits for it. The entry goes with its last user:
    a lock kept per key for ever grew with every payment reference and driver the process saw."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[threading.Lock, list[int]]] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, key: str) -> Iterator[bool]:
        """Hold ``key``'s lock; yields whether another holder had it first (we waited)."""
        with self._guard:
            lock, users = self._entries.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        waited = not lock.acquire(blocking=False)
        if waited:
            lock.acquire()
        try:
            yield waited
        finally:
            lock.release()
            with self._guard:
                users[0] -= 1
                if users[0] == 0:
                    del self._entries[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._entries)
