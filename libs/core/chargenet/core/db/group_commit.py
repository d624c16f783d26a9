"""Requests that arrive together share one transaction (a group commit).

Why: a transaction's fixed cost (BEGIN, COMMIT, the ORM's flush, a round trip each) is most of a
small write. When a crowd of drivers asks for the same kind of change at once (every car of a
fleet stopped at the end of a shift), one transaction per request spends the caller's CPU on that
fixed cost again and again, and the requests queue behind each other for it.

A ``GroupCommit`` hands its requests to one thread. That thread takes whatever has queued up
while the previous batch ran (up to ``max_batch``), applies them in one call and answers each
request's future. A request alone is applied alone, without waiting for company: under a light
load nothing is added to its time.

``apply(items)`` returns one outcome per item, in order: a result, or the exception that item is
refused with (a refusal of one is not a failure of the others). If ``apply`` itself raises (the
transaction failed: a lost connection, a deadlock), each item is tried again alone, so no request
fails for another's sake; a lone item that raises gets its exception.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from chargenet.core.metrics import counter

log = logging.getLogger(__name__)
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
#: Their ratio is the mean batch: how much the grouping saves under the load of the moment.
BATCHES = counter("chargenet_group_commit_batches", "Transactions of a group commit", ("kind",))
REQUESTS = counter(
    "chargenet_group_commit_requests", "Requests applied by a group commit", ("kind",)
)

Apply = Callable[[Sequence[ItemT]], Sequence[ResultT | Exception]]
_Pending = tuple[ItemT, Future[ResultT]]


class GroupCommit(Generic[ItemT, ResultT]):
    """``submit(item)`` from any thread; ``apply`` runs on this object's one thread (started by
    the first submit, stopped by ``close``)."""

    def __init__(self, apply: Apply[ItemT, ResultT], *, kind: str, max_batch: int = 100) -> None:
        self._apply = apply
        self._kind = kind
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending[ItemT, ResultT] | None] = queue.SimpleQueue()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, item: ItemT) -> Future[ResultT]:
        """The item's outcome, once its batch committed (or was refused)."""
        future: Future[ResultT] = Future()
        with self._guard:
            if self._closed:
                raise RuntimeError(f"group commit {self._kind} is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"group-commit-{self._kind}", daemon=True
                )
                self._thread.start()
            self._queue.put((item, future))
        return future

    def close(self) -> None:
        """Apply what is queued, then stop."""
        with self._guard:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            closing = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                batch.append(more)
            try:
                self._answer(batch)
            except Exception as error:  # a bug here must not leave its callers waiting for ever
                log.exception("group commit %s: answering a batch failed", self._kind)
                for _item, future in batch:
                    if not future.done():
                        future.set_exception(error)
            if closing:
                return

    def _answer(self, batch: list[_Pending[ItemT, ResultT]]) -> None:
        # Running from here: a caller that gave up (a client gone, its task cancelled) can no
        # longer cancel the future, and its item is applied all the same (it was asked for).
        waiting = [future.set_running_or_notify_cancel() for _item, future in batch]
        self._settle(batch, waiting)

    def _settle(self, batch: list[_Pending[ItemT, ResultT]], waiting: list[bool]) -> None:
        BATCHES.labels(kind=self._kind).inc()
        REQUESTS.labels(kind=self._kind).inc(len(batch))
        outcomes: Sequence[ResultT | Exception]
        try:
            outcomes = self._apply([item for item, _future in batch])
        except Exception as error:
            if len(batch) > 1:
                log.warning(
                    "group commit %s: a batch of %d failed; each is tried alone",
                    self._kind,
                    len(batch),
                    exc_info=True,
                )
                for pending, wanted in zip(batch, waiting, strict=True):
                    self._settle([pending], [wanted])
                return
            log.exception("group commit %s: the request failed", self._kind)
            outcomes = [error]
        for (_item, future), outcome, wanted in zip(batch, outcomes, waiting, strict=True):
            if not wanted:
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
