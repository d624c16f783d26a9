"""The escrow's background worker: open and settle batches, chain operations, the sweeper.

One thread, woken by every commit that leaves it work (a request, a stop, a staged operation,
an operation that finished) and otherwise every ``escrow_tick_seconds``. Each tick: open the
waiting requests, settle the stopped sessions (one settleBatch per settler key), send staged
operations; a wake-up runs only the parts its commits asked for (``core.Work``). Batches fill
themselves: what arrives while an open (a key's settlement) is on its way waits for it and goes
out together, at the latest ``escrow_open_window_seconds`` (``escrow_settle_delay_seconds``)
after the oldest of them. With no open on its way, the consumer stages a request's open in the
transaction that records the request (``SessionHandlers._open_requested``), so a lone start
waits for no tick of this worker. Outcomes arrive on the signer's stream
(``Operations.follow``, its own thread). Every ``escrow_sweep_seconds`` the sweeper asks about
operations the stream did not report, cancels starts past their deadline, settles sessions
whose charge point went silent, makes sure nothing stays locked past its expiry (refunding a
FAILED session's escrow still open on chain, each read only when its check is due), and updates
the gauges.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from chargenet.core.chain import SessionState
from chargenet.escrow.chain import ChainReader
from chargenet.escrow.core import ALL_WORK, EscrowCore, Tx, Work, utcnow
from chargenet.escrow.handlers import cancel, close
from chargenet.escrow.metrics import SESSIONS, SETTLEMENT_LAG
from chargenet.escrow.models import ChainOp, SessionRow
from chargenet.escrow.operations import Operations, in_flight, open_or_wait, stage, stage_close
from chargenet.escrow.settings import EscrowSettings
from chargenet.escrow.states import LIVE, SWEPT_FOR_REFUND, State

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, core: EscrowCore, reader: ChainReader, operations: Operations) -> None:
        self.core = core
        self.reader = reader
        self.operations = operations
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: What the commits since the last tick left to do (``wake``).
        self._due: set[Work] = set()
        self._due_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._last_sweep = 0.0
        # Built once (each tick runs them; building a statement and its cache key costs more
        # Python than running a cached one), for this database's locking.
        self._oldest_requested = core.select_for_work(oldest_in_state(State.REQUESTED))
        self._oldest_stopped = core.select_for_work(oldest_in_state(State.STOPPED))
        #: Seconds until the next tick: the poll interval, or sooner when a held-back batch's
        #: window ends first (nothing may commit meanwhile to wake the worker).
        self._next_tick = 0.0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.core.on_work = self.wake
        self._threads = [
            threading.Thread(target=self._run, name="escrow-worker", daemon=True),
            threading.Thread(
                target=self.operations.follow,
                args=(self.wake,),
                name="escrow-follower",
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.operations.stop_following()
        for thread in self._threads:
            thread.join(timeout=30)
        self.operations.close()

    def wake(self, work: Collection[Work] = ALL_WORK) -> None:
        """Run a tick now (there is work) rather than at the next poll."""
        with self._due_lock:
            self._due.update(work)
        self._wake.set()

    def _run(self) -> None:
        settings = self.core.settings
        timed_out = True  # the first tick does everything
        while not self._stop.is_set():
            # Cleared before the tick: work committed during it runs another one at once.
            self._wake.clear()
            with self._due_lock:
                due, self._due = self._due, set()
            self._next_tick = min(settings.escrow_tick_seconds, settings.escrow_sweep_seconds)
            try:
                # Woken, only what the commits asked for: each part of a tick is a transaction,
                # and most wake-ups concern one part. The periodic tick (and a held batch's
                # window, which nothing wakes) runs them all.
                self.tick(ALL_WORK if timed_out else due)
                self.sweep_if_due()
            except Exception:
                log.exception("escrow worker tick failed; retrying")
                self._stop.wait(1.0)
                timed_out = True  # what it was to do is left to a whole tick
                continue
            timed_out = not self._wake.wait(self._next_tick)

    def tick(self, work: Collection[Work] = ALL_WORK) -> None:
        if Work.OPENS in work:
            self.batch_opens()
        if Work.SETTLES in work:
            self.batch_settlements()
        if work:
            # What the batches above staged goes now: their commits' wake-up for the sends
            # is dropped rather than run as one more tick.
            with self._due_lock:
                self._due.discard(Work.SENDS)
            self.operations.send_new()

    def sweep_if_due(self) -> None:
        now = utcnow().timestamp()
        if now - self._last_sweep >= self.core.settings.escrow_sweep_seconds:
            self._last_sweep = now
            # With the stream connected it reports every outcome; the poll only catches what
            # finished while it reconnected. Without it, the poll is the only way.
            self.operations.poll(older_than=1.0 if self.operations.following.is_set() else 0.0)
            self.sweep()

    def _hold(self, oldest: datetime, window: timedelta) -> None:
        """A batch waits for the one on its way: tick again when its window ends at the latest."""
        seconds = (oldest + window - utcnow()).total_seconds()
        self._next_tick = max(0.0, min(self._next_tick, seconds))

    # -- batches -----------------------------------------------------------------------------
    def batch_opens(self) -> None:
        settings = self.core.settings
        with self.core.tx() as tx:
            limit = {"limit": settings.escrow_max_batch}
            rows = list(tx.session.scalars(self._oldest_requested, limit))
            if not rows:
                return
            if not open_or_wait(self.core, tx, rows):
                # They go with the next open, as soon as the one on its way is done.
                window = timedelta(seconds=settings.escrow_open_window_seconds)
                self._hold(rows[0].created_at, window)

    def batch_settlements(self) -> None:
        settings = self.core.settings
        with self.core.tx() as tx:
            limit = {"limit": settings.escrow_max_batch}
            rows = list(tx.session.scalars(self._oldest_stopped, limit))
            if not rows:
                return
            # A failed settle leaves its op on the row (close_op) and goes back alone at once;
            # ``attempts`` is no guide, it also counts failed opens. The window is the fresh
            # sessions': it runs from the first of them to stop, so a retry neither opens nor
            # shortens it.
            retries = [r for r in rows if r.close_op is not None]
            fresh = [r for r in rows if r.close_op is None]
            delay = timedelta(seconds=settings.escrow_settle_delay_seconds)
            for row in retries:
                stage(self.core, tx, "settle", [row], settings.settler_key(row.cpo_id))
                tx.move(row, State.SETTLING)
            groups: dict[str, list[SessionRow]] = defaultdict(list)
            for row in fresh:
                groups[settings.settler_key(row.cpo_id)].append(row)
            now = utcnow()
            for key, group in groups.items():
                oldest = min(r.stopped_at or r.updated_at for r in group)
                if (
                    now - oldest < delay
                    and len(group) < settings.escrow_max_batch
                    and in_flight(tx, "settle", key)
                ):
                    # They go together once the key's settlement on its way is done.
                    self._hold(oldest, delay)
                    continue
                stage(self.core, tx, "settle", group, key)
                for row in group:
                    tx.move(row, State.SETTLING)

    # -- the sweeper -------------------------------------------------------------------------
    def sweep(self) -> None:
        settings = self.core.settings
        now = utcnow()
        margin = timedelta(seconds=settings.escrow_expiry_margin_seconds)
        silence = timedelta(seconds=settings.escrow_session_timeout_seconds)
        with self.core.tx() as tx:
            due = self.core.select_for_work(due_for_sweep(now, margin, silence))
            rows = list(tx.session.scalars(due))
            for row in rows:
                state = State(row.state)
                near_expiry = now >= row.expiry - margin
                if state is State.OPEN:
                    # Opened, but the start was never sent (a crash in between): send it now.
                    if near_expiry:
                        cancel(self.core, tx, row, "the escrow expiry is near")
                    else:
                        self.core.start(tx, row)
                elif state is State.STARTING and (
                    near_expiry or (row.start_deadline is not None and now > row.start_deadline)
                ):
                    cancel(self.core, tx, row, "the charge point did not start before the deadline")
                elif state in (State.CHARGING, State.STOPPING):
                    quiet = (
                        row.last_activity_at is not None and now - row.last_activity_at > silence
                    )
                    if quiet or near_expiry:
                        why = (
                            "charge point lost: no event for "
                            f"{settings.escrow_session_timeout_seconds:g} s"
                            if quiet
                            else "the escrow expiry is near"
                        )
                        row.stop_reason = row.stop_reason or why
                        self.core.stop_command(tx, row)
                        # What the last meter value proves, and no time after it.
                        close(self.core, tx, row, end=None, reason=why)
        self._refund_expired()
        self._gauges()

    def _refund_expired(self) -> None:
        """Refund the escrow of a FAILED (or stuck CANCELLING) session still open on chain past
        its expiry. Each session's escrow is read when its ``refund_check_at`` comes, a bounded
        batch per sweep, longest due first: reading every one at every sweep cost a node call per
        session that ever failed, for ever."""
        settings = self.core.settings
        with self.core.tx() as tx:
            first_due = tx.session.scalar(_FIRST_REFUND_CHECK)
            if first_due is None:
                return  # the common case: no node round trip every sweep
            # The chain's clock decides an expiry, not ours (a test node's may run ahead).
            chain_now = datetime.fromtimestamp(self.reader.chain_time(), UTC)
            if first_due > chain_now:
                return
            due = due_for_refund_check(chain_now, settings.escrow_refund_checks_per_sweep)
            for row in tx.session.scalars(self.core.select_for_work(due)):
                self._check_refund(tx, row, chain_now)

    def _check_refund(self, tx: Tx, row: SessionRow, chain_now: datetime) -> None:
        """Refund the session's escrow if it is still open on chain, and say when to look next."""
        settings = self.core.settings
        op = tx.session.get(ChainOp, row.close_op) if row.close_op else None
        if op is not None and op.status in ("new", "sent"):
            # Its outcome moves the session on; until then it need not head every sweep's batch.
            row.refund_check_at = chain_now + timedelta(
                seconds=settings.escrow_refund_retry_seconds
            )
            return
        escrow = self.reader.session(bytes.fromhex(row.chain_session_id[2:]))
        if escrow.state is not SessionState.OPEN:
            # Final: past its expiry an escrow can no longer be opened, and a closed one (settled,
            # cancelled or refunded) stays closed. The session needs its operator, not the node.
            row.refund_check_at = None
            log.warning(
                "session %s stays %s: its escrow is %s on chain, nothing left to refund",
                row.session_id,
                row.state,
                escrow.state.name,
            )
            return
        row.attempts += 1
        row.refunds_sent += 1
        row.refund_check_at = chain_now + refund_back_off(settings, row.refunds_sent)
        stage_close(self.core, tx, [row], "refund")

    def _gauges(self) -> None:
        # Only the states a session passes through: counting the settled ones too would read
        # every session the escrow ever had, at every sweep (the counter of finished ones
        # says how many there were).
        with self.core.tx() as tx:
            counts = dict(
                tx.session.execute(
                    sa.select(SessionRow.state, sa.func.count())
                    .where(SessionRow.state.in_([state.value for state in LIVE]))
                    .group_by(SessionRow.state)
                ).all()
            )
            oldest = tx.session.scalar(
                sa.select(SessionRow.stopped_at)
                .where(SessionRow.state.in_([State.STOPPED.value, State.SETTLING.value]))
                .order_by(SessionRow.stopped_at)
                .limit(1)
            )
        for state in LIVE:
            SESSIONS.labels(state.value).set(int(counts.get(state.value, 0)))
        lag = 0.0 if oldest is None else (utcnow() - oldest).total_seconds()
        SETTLEMENT_LAG.set(max(lag, 0.0))


def oldest_in_state(state: State) -> sa.Select[SessionRow]:
    """The sessions in ``state`` that waited longest (requested: since created; stopped: since
    the stop), at most ``limit``."""
    since = SessionRow.stopped_at if state is State.STOPPED else SessionRow.created_at
    return (
        sa.select(SessionRow)
        .where(SessionRow.state == state.value)
        .order_by(since)
        .limit(sa.bindparam("limit"))
    )


def due_for_sweep(now: datetime, margin: timedelta, silence: timedelta) -> sa.Select[SessionRow]:
    """The sessions the sweeper acts on (``sweep`` decides what to do with each): opened and
    not started, past their start deadline, silent too long, or near their expiry. Only those
    are read and locked, not every running session each second: the others' consumers would
    wait on the locks, and a network's thousands of charging sessions would be read for
    nothing."""
    running = [State.OPEN, State.STARTING, State.CHARGING, State.STOPPING]
    return sa.select(SessionRow).where(
        sa.or_(
            SessionRow.state == State.OPEN.value,
            sa.and_(
                SessionRow.state.in_([s.value for s in running]),
                SessionRow.expiry <= now + margin,
            ),
            sa.and_(SessionRow.state == State.STARTING.value, SessionRow.start_deadline < now),
            sa.and_(
                SessionRow.state.in_([State.CHARGING.value, State.STOPPING.value]),
                SessionRow.last_activity_at < now - silence,
            ),
        )
    )


#: The earliest check the sweeper has to make, if any (one index entry: the partial index holds
#: only the sessions it waits on).
_FIRST_REFUND_CHECK = (
    sa.select(SessionRow.refund_check_at)
    .where(
        SessionRow.state.in_([state.value for state in SWEPT_FOR_REFUND]),
        SessionRow.refund_check_at.is_not(None),
    )
    .order_by(SessionRow.refund_check_at)
    .limit(1)
)


def due_for_refund_check(chain_now: datetime, limit: int) -> sa.Select[SessionRow]:
    """The FAILED (or stuck CANCELLING) sessions whose escrow the sweeper reads now: their check
    is due on the chain's clock; at most ``limit``, longest due first, so a backlog of failures
    costs each sweep a bounded number of node calls and none waits behind newer ones."""
    return (
        sa.select(SessionRow)
        .where(
            SessionRow.state.in_([state.value for state in SWEPT_FOR_REFUND]),
            SessionRow.refund_check_at <= chain_now,
        )
        .order_by(SessionRow.refund_check_at)
        .limit(limit)
    )


def refund_back_off(settings: EscrowSettings, refunds_sent: int) -> timedelta:
    """How long an escrow still open after ``refunds_sent`` refunds waits to be read again:
    ``escrow_refund_retry_seconds``, doubling with each refund, at most the maximum."""
    doublings = min(refunds_sent - 1, 30)  # 2**30 minutes exceed any maximum; no float overflow
    seconds = settings.escrow_refund_retry_seconds * 2**doublings
    return timedelta(seconds=min(seconds, settings.escrow_refund_retry_max_seconds))
