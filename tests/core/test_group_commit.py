"""The group commit: requests queued while a batch runs go together; a refusal stays its own; a
failed batch is tried one by one; close applies what is queued."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import wait

import pytest

from chargenet.core.db.group_commit import GroupCommit


class Recorder:
    """``apply``: records each batch; the first waits until released; "bad" is refused; a
    batch with "poison" fails as a whole."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.first_running = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: Sequence[str]) -> list[str | Exception]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.first_running.set()
            assert self.release.wait(10)
        if "poison" in items:
            raise RuntimeError("the transaction failed")
        return [ValueError(item) if item == "bad" else item.upper() for item in items]


def test_requests_queued_while_a_batch_runs_are_applied_together() -> None:
    apply = Recorder()
    group = GroupCommit(apply, kind="test")
    try:
        first = group.submit("a")
        assert apply.first_running.wait(10)
        later = [group.submit(item) for item in ("b", "bad", "c")]
        apply.release.set()
        assert first.result(10) == "A"
        assert [f.result(10) for f in (later[0], later[2])] == ["B", "C"]
        with pytest.raises(ValueError, match="bad"):
            later[1].result(10)
        assert apply.batches == [["a"], ["b", "bad", "c"]]
    finally:
        group.close()


def test_a_failed_batch_is_tried_one_by_one() -> None:
    apply = Recorder()
    group = GroupCommit(apply, kind="test")
    try:
        group.submit("warm-up")
        assert apply.first_running.wait(10)
        futures = [group.submit(item) for item in ("a", "poison", "b")]
        apply.release.set()
        wait(futures, timeout=10)
        assert futures[0].result() == "A" and futures[2].result() == "B"
        with pytest.raises(RuntimeError, match="transaction failed"):
            futures[1].result()
        assert apply.batches[1:] == [["a", "poison", "b"], ["a"], ["poison"], ["b"]]
    finally:
        group.close()


def test_a_batch_is_at_most_max_batch() -> None:
    apply = Recorder()
    group = GroupCommit(apply, kind="test", max_batch=2)
    try:
        group.submit("warm-up")
        assert apply.first_running.wait(10)
        futures = [group.submit(item) for item in "abcde"]
        apply.release.set()
        assert [f.result(10) for f in futures] == list("ABCDE")
        assert apply.batches[1:] == [["a", "b"], ["c", "d"], ["e"]]
    finally:
        group.close()


def test_a_request_its_caller_gave_up_on_is_applied_and_close_applies_what_is_queued() -> None:
    apply = Recorder()
    group = GroupCommit(apply, kind="test")
    group.submit("warm-up")
    assert apply.first_running.wait(10)
    abandoned = group.submit("gone")
    queued = group.submit("queued")
    assert abandoned.cancel()
    closing = threading.Thread(target=group.close)
    closing.start()
    apply.release.set()
    closing.join(10)
    assert not closing.is_alive()
    assert queued.result(0) == "QUEUED"
    assert apply.batches[1:] == [["gone", "queued"]]
    with pytest.raises(RuntimeError, match="closed"):
        group.submit("late")
