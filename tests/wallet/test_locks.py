"""The wallet's per-key locks and per-driver caches stay as large as what is in use."""

from __future__ import annotations

import threading
import time

import pytest

from chargenet.wallet import chain
from chargenet.wallet.locks import KeyedLocks


def test_a_keys_lock_goes_with_its_last_user_and_says_who_waited() -> None:
    locks = KeyedLocks()
    for n in range(1_000):  # a payment reference each, as top-ups bring them
        with locks.hold(f"topup:pay-{n}") as waited:
            assert waited is False
    assert len(locks) == 0

    inside: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with locks.hold("driver-1"):
            inside.append("first in")
            first_in.set()
            time.sleep(0.2)
            inside.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait()
    with locks.hold("driver-1") as waited:
        inside.append("second in")
    thread.join()
    assert waited is True
    assert inside == ["first in", "first out", "second in"]
    assert len(locks) == 0


def test_the_chain_readers_caches_keep_the_most_recent_drivers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chain, "CACHED_DRIVERS", 3)
    cache: dict[str, int] = {}
    for n, address in enumerate(["a", "b", "c", "a", "d"]):
        chain._keep_recent(cache, address, n)
    assert cache == {"c": 2, "a": 3, "d": 4}  # "b", the least recently stored, went
