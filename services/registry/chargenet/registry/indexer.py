"""The chain indexer: StationRegistry (and ChargingEscrow) logs into the registry's tables.

One step: check that the block under the cursor is still on the node's chain (else roll back to
the common ancestor), fetch the logs of the next confirmed range, and apply them, the outbox
events they cause and the new cursor in one database transaction (a catch-up may apply several
ranges in one). A crash anywhere leaves either the old cursor with none of the range applied or
the new cursor with all of it, so a restart neither skips nor repeats a log.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chargenet.core.db import Database
from chargenet.registry.chain import ChainEvent, Kind, decode, topics_for
from chargenet.registry.metrics import (
    EVENTS_APPLIED,
    INDEXED_BLOCK,
    LAG_BLOCKS,
    REORGS,
    ROLLED_BACK_BLOCKS,
)
from chargenet.registry.models import AppliedBlock, Cursor
from chargenet.registry.rpc import ChainReader, LogQuery, RpcError
from chargenet.registry.writes import (
    apply_operators,
    apply_sessions,
    apply_stations,
    record_blocks,
    undo_above,
)

log = logging.getLogger(__name__)

_STATION_KINDS = frozenset({Kind.REGISTERED, Kind.UPDATED, Kind.RETIRED})
_SESSION_KINDS = frozenset(
    {Kind.SESSION_OPENED, Kind.SESSION_SETTLED, Kind.SESSION_CANCELLED, Kind.SESSION_REFUNDED}
)


@dataclass(frozen=True)
class Position:
    number: int
    hash: str | None  # None before the first block (start_block - 1)


@dataclass(frozen=True)
class StepResult:
    applied: int = 0  # logs applied
    to_block: int | None = None  # the cursor after the step, when it moved forward
    rolled_back_to: int | None = None  # the common ancestor, when a reorg was undone
    retry: bool = False  # the chain moved while the range was read; nothing applied

    @property
    def idle(self) -> bool:
        return self.to_block is None and self.rolled_back_to is None and not self.retry


@dataclass(frozen=True)
class _Range:
    """A range read from the node and checked, ready to apply on top of ``cursor``."""

    cursor: Position
    target: Position
    events: list[ChainEvent]


_RETRY = object()
_NOTHING = object()
_READ_AHEAD = 4  # ranges read and waiting, at most
_GROUP_LOGS = 5_000  # logs applied in one transaction when ranges wait, about
_READ_CURSOR = sa.select(Cursor.block_number, Cursor.block_hash).where(Cursor.id == 1)
_LOCK_CURSOR_PG = _READ_CURSOR.with_for_update()
_MOVE_CURSOR = (
    sa.update(Cursor)
    .where(Cursor.id == 1)
    .values(
        block_number=sa.bindparam("number"),
        block_hash=sa.bindparam("hash"),
        updated_at=sa.bindparam("at"),
    )
)


class Indexer:
    def __init__(
        self,
        db: Database,
        reader: ChainReader,
        *,
        registry_address: str,
        escrow_address: str = "",
        start_block: int = 0,
        confirmations: int = 2,
        batch_blocks: int = 2_000,
        source: str = "registry",
    ) -> None:
        self.db = db
        self.reader = reader
        self.addresses = [a for a in (registry_address, escrow_address) if a]
        self.topics = topics_for(bool(escrow_address))
        self.start_block = start_block
        self.confirmations = confirmations
        self.batch_blocks = batch_blocks
        self.source = source

    # -- the cursor ------------------------------------------------------------------------------

    def position(self) -> Position:
        with self.db.session() as session:
            cursor = session.get(Cursor, 1)
            if cursor is None:
                return Position(self.start_block - 1, None)
            return Position(cursor.block_number, cursor.block_hash)

    def _on_chain(self, position: Position) -> bool:
        return position.hash is None or self.reader.block_hash(position.number) == position.hash

    # -- one step --------------------------------------------------------------------------------

    def step(self) -> StepResult:
        """Check for a reorg, then read and apply the next range (at most ``batch_blocks``)."""
        cursor = self.position()
        head = self.reader.head()
        LAG_BLOCKS.set(max(0, head - cursor.number))
        INDEXED_BLOCK.set(cursor.number)
        if not self._on_chain(cursor):
            return StepResult(rolled_back_to=self.rollback(cursor))
        read = self._read(cursor, head)
        if read is None:
            return StepResult()
        if read is _RETRY:
            return StepResult(retry=True)
        assert isinstance(read, _Range)
        if not self.apply(read.cursor, read.target, read.events):
            return StepResult(retry=True)
        self._progress(head, read.target.number)
        return StepResult(applied=len(read.events), to_block=read.target.number)

    def catch_up(self) -> int:
        """Apply ranges until the confirmed head; returns the logs applied.

        Ranges are read (fetched, checked, decoded) on a second thread, up to
        ``_READ_AHEAD`` ahead, while this one writes, so the node's time to answer overlaps
        with the database's and catch-up runs at close to the speed of whichever is slower.
        When the writer is the slower, the ranges that wait are applied together in one
        transaction (up to ``_GROUP_LOGS`` logs): a transaction's fixed cost then counts once
        for several. Ranges are only applied if the cursor is still where their read started.
        """
        applied = 0
        while True:
            cursor = self.position()
            head = self.reader.head()
            self._progress(head, cursor.number)
            if not self._on_chain(cursor):
                self.rollback(cursor)
                continue
            if head - self.confirmations <= cursor.number:
                return applied
            count, done = self._pipeline(cursor, head)
            applied += count
            if done:
                return applied

    def _pipeline(self, cursor: Position, head: int) -> tuple[int, bool]:
        """Read ranges from ``cursor`` on a second thread and apply them here; returns the logs
        applied and whether the confirmed head was reached (else the chain or the cursor moved:
        start again from the cursor)."""
        ranges: queue.Queue[object] = queue.Queue(maxsize=_READ_AHEAD)
        stop = threading.Event()

        def offer(item: object) -> None:
            while not stop.is_set():
                with contextlib.suppress(queue.Full):
                    ranges.put(item, timeout=0.1)
                    return

        def read_ahead() -> None:
            try:
                for read in self._reads(cursor, head):
                    offer(read)
                    if stop.is_set():
                        return
            except BaseException as error:  # handed to the writer, which raises it
                offer(error)

        reader = threading.Thread(target=read_ahead, name="registry-read-ahead", daemon=True)
        reader.start()
        applied = 0
        try:
            item = ranges.get()
            while True:
                if isinstance(item, BaseException):
                    raise item
                if not isinstance(item, _Range):
                    return applied, item is None  # None: caught up; _RETRY: the chain moved
                group, item = [item], _NOTHING
                logs = len(group[0].events)
                while logs < _GROUP_LOGS:
                    try:
                        waiting = ranges.get_nowait()
                    except queue.Empty:
                        break
                    if not isinstance(waiting, _Range):
                        item = waiting  # handled once this group is applied
                        break
                    group.append(waiting)
                    logs += len(waiting.events)
                events = [event for read in group for event in read.events]
                passed = [read.target for read in group[:-1]]
                if not self.apply(group[0].cursor, group[-1].target, events, passed):
                    return applied, False
                applied += len(events)
                self._progress(head, group[-1].target.number)
                if item is _NOTHING:
                    item = ranges.get()
        finally:
            stop.set()
            reader.join()

    def _progress(self, head: int, indexed: int) -> None:
        LAG_BLOCKS.set(max(0, head - indexed))
        INDEXED_BLOCK.set(indexed)

    def _read(self, cursor: Position, head: int) -> _Range | object | None:
        """The logs after ``cursor`` up to the confirmed head (None: nothing to read; _RETRY:
        the chain moved while reading), in three round trips: one step's worth."""
        target = min(head - self.confirmations, cursor.number + self.batch_blocks)
        if target <= cursor.number:
            return None
        target_hash = self.reader.block_hash(target)
        if target_hash is None:
            return _RETRY
        raw = self.reader.logs(self.addresses, self.topics, cursor.number + 1, target)
        numbers = [target] if cursor.hash is None else [target, cursor.number]
        hashes = self.reader.block_hashes(numbers)
        return self._checked(cursor, Position(target, target_hash), raw, numbers, hashes)

    def _reads(self, cursor: Position, head: int) -> Iterator[_Range | object | None]:
        """The checked ranges from ``cursor`` to the confirmed head, ending with None (caught
        up) or _RETRY (the chain moved), in one JSON-RPC round trip per range.

        A range's logs may mix two forks unless its last block's hash is the same before and
        after they were read, and its first block's parent is still the cursor's. So each
        round trip carries the logs of one range, the hashes that check the range before it
        (whose logs came in the previous answer) and the last block of the range after it (read
        before that range's logs are asked for). No check relies on the order in which the node
        answers the calls of one batch.
        """
        confirmed = head - self.confirmations
        first = min(confirmed, cursor.number + self.batch_blocks)
        if first <= cursor.number:
            yield None
            return
        first_hash = self.reader.block_hash(first)
        if first_hash is None:
            yield _RETRY
            return
        following: tuple[Position, Position] | None = (cursor, Position(first, first_hash))
        checking: tuple[Position, Position, list[dict[str, Any]]] | None = None
        moved = False
        # The first range is checked in a round trip of its own, so the writer starts one
        # round trip (of a range's logs) sooner; the others ride along with the next logs.
        lead = True
        while following is not None or checking is not None:
            fetch = None if lead and checking is not None else following
            query: LogQuery | None = None
            numbers: list[int] = []
            if checking is not None:
                numbers.append(checking[1].number)
                if checking[0].hash is not None:
                    numbers.append(checking[0].number)
            after = None
            if fetch is not None:
                start, end = fetch
                query = (self.addresses, self.topics, start.number + 1, end.number)
                if min(confirmed, end.number + self.batch_blocks) > end.number:
                    after = min(confirmed, end.number + self.batch_blocks)
                    numbers.append(after)
            raw, hashes = self.reader.logs_and_hashes(query, numbers)
            if checking is not None:
                read = self._checked(*checking, numbers, hashes)
                yield read
                if not isinstance(read, _Range):
                    return
                checking, lead = None, False
            if fetch is not None:
                assert raw is not None
                checking = (fetch[0], fetch[1], raw)
                following = None
                if after is not None:
                    after_hash = hashes[-1]
                    if after_hash is None:
                        moved = True  # the head went back: check what was read, then retry
                    else:
                        following = (checking[1], Position(after, after_hash))
        yield _RETRY if moved else None

    def _checked(
        self,
        cursor: Position,
        target: Position,
        raw: list[dict[str, Any]],
        numbers: Sequence[int],
        hashes: Sequence[str | None],
    ) -> _Range | object:
        """The range's decoded logs if the hashes read after them still show the same chain."""
        read = dict(zip(numbers, hashes, strict=True))
        if read.get(target.number) != target.hash:
            return _RETRY
        if cursor.hash is not None and read.get(cursor.number) != cursor.hash:
            return _RETRY
        try:
            events = decode(raw)
        except RpcError:
            return _RETRY
        if any(e.block_number == target.number and e.block_hash != target.hash for e in events):
            return _RETRY
        return _Range(cursor, target, events)

    def run(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        """Follow the chain until ``stop`` is set; node or database errors are retried."""
        while not stop.is_set():
            try:
                self.catch_up()
            except Exception:
                log.exception("indexer catch-up failed; retrying")
            stop.wait(poll_seconds)

    # -- applying a range ------------------------------------------------------------------------

    def apply(
        self,
        cursor: Position,
        target: Position,
        events: Sequence[ChainEvent],
        passed: Sequence[Position] = (),
    ) -> bool:
        """Apply the logs from ``cursor`` to ``target``; False (nothing applied) if the cursor
        is no longer ``cursor``. ``passed``: ends of ranges read on the way, whose hashes are
        kept too (the reorg search finds a common ancestor among the blocks it knows)."""
        with self.db.session() as session:
            # Taken first, so two indexers on one database (a rolling deploy) serialise here
            # and the second sees the cursor moved and applies nothing.
            if self._lock_cursor(session) != cursor:
                return False
            apply_stations(session, [e for e in events if e.kind in _STATION_KINDS], self.source)
            apply_operators(session, [e for e in events if e.kind is Kind.OPERATOR_SET])
            apply_sessions(session, [e for e in events if e.kind in _SESSION_KINDS])
            blocks = {e.block_number: e.block_hash for e in events}
            for position in (*passed, target):
                blocks[position.number] = str(position.hash)
            record_blocks(session, blocks)
            self._move_cursor(session, target)
        for kind, count in Counter(e.kind for e in events).items():
            EVENTS_APPLIED.labels(kind=kind.value).inc(count)
        return True

    # Prepared Core statements rather than an ORM Cursor object: a range's fixed cost (lock,
    # update, commit) counts once per few hundred logs when catching up.
    def _lock_cursor(self, session: Session) -> Position:
        query = _LOCK_CURSOR_PG if self.db.is_postgres else _READ_CURSOR
        row = session.execute(query).one_or_none()
        if row is not None:
            return Position(row.block_number, row.block_hash)
        initial = Position(self.start_block - 1, None)
        session.execute(
            sa.insert(Cursor).values(
                id=1, block_number=initial.number, block_hash=None, updated_at=datetime.now(UTC)
            )
        )
        return initial

    def _move_cursor(self, session: Session, to: Position) -> None:
        session.execute(
            _MOVE_CURSOR, {"number": to.number, "hash": to.hash, "at": datetime.now(UTC)}
        )

    # -- reorganisations -------------------------------------------------------------------------

    def rollback(self, cursor: Position) -> int:
        """Undo every block above the deepest stored block still on the chain; returns it."""
        ancestor = Position(self.start_block - 1, None)
        with self.db.session() as session:
            stored = session.execute(
                sa.select(AppliedBlock.number, AppliedBlock.hash)
                .where(AppliedBlock.number <= cursor.number)
                .order_by(AppliedBlock.number.desc())
            ).all()
        for number, block_hash in stored:
            if self.reader.block_hash(number) == block_hash:
                ancestor = Position(number, block_hash)
                break
        with self.db.session() as session:
            now_at = self._lock_cursor(session)
            if now_at != cursor:
                return now_at.number  # another indexer got here first
            undo_above(
                session,
                ancestor.number,
                reorg_id=f"{cursor.hash}:{ancestor.hash}",
                source=self.source,
            )
            self._move_cursor(session, ancestor)
        REORGS.inc()
        ROLLED_BACK_BLOCKS.inc(cursor.number - ancestor.number)
        INDEXED_BLOCK.set(ancestor.number)
        log.warning(
            "chain reorganisation: rolled the index back from block %d to %d",
            cursor.number,
            ancestor.number,
        )
        return ancestor.number
