"""The escrow's background worker: open and settle batches, chain operations, the sweeper.

One thread. Each tick: gather the requests whose batch window passed into one openBatch,
the stopped sessions whose settle delay passed into settleBatch transactions (one per settler
key), send staged operations, follow sent ones. Every ``escrow_sweep_seconds`` the sweeper
cancels starts past their deadline, settles sessions whose charge point went silent, makes sure
nothing stays locked past its expiry, and updates the gauges.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from datetime import timedelta

import sqlalchemy as sa

from chargenet.core.chain import SessionState
from chargenet.core.events import SessionCancelled
from chargenet.escrow.chain import ChainReader
from chargenet.escrow.core import EscrowCore, utcnow
from chargenet.escrow.handlers import cancel, close
from chargenet.escrow.metrics import SESSIONS, SETTLEMENT_LAG
from chargenet.escrow.models import ChainOp, SessionRow
from chargenet.escrow.operations import Operations, open_request, stage, stage_close
from chargenet.escrow.states import State

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, core: EscrowCore, reader: ChainReader, operations: Operations) -> None:
        self.core = core
        self.reader = reader
        self.operations = operations
        self._relayer_address: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="escrow-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        settings = self.core.settings
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("escrow worker tick failed; retrying")
                self._stop.wait(1.0)
            self._stop.wait(settings.escrow_tick_seconds)

    def tick(self) -> None:
        self.batch_opens()
        self.batch_settlements()
        self.operations.send_new()
        self.operations.poll()
        now = utcnow().timestamp()
        if now - self._last_sweep >= self.core.settings.escrow_sweep_seconds:
            self._last_sweep = now
            self.sweep()

    @property
    def relayer_address(self) -> str:
        if self._relayer_address is None:
            alias = self.core.settings.escrow_relayer_key
            keys = {k.alias: k.address for k in self.operations.signer.list_keys()}
            if alias not in keys:
                raise LookupError(f"the signer has no key {alias!r} (escrow_relayer_key)")
            self._relayer_address = keys[alias]
        return self._relayer_address

    # -- batches -----------------------------------------------------------------------------
    def batch_opens(self) -> None:
        settings = self.core.settings
        with self.core.tx() as tx:
            query = (
                sa.select(SessionRow)
                .where(SessionRow.state == State.REQUESTED.value)
                .order_by(SessionRow.created_at)
                .limit(settings.escrow_max_batch)
            )
            rows = list(tx.session.scalars(self.core.select_for_work(query)))
            if not rows:
                return
            window = timedelta(seconds=settings.escrow_open_window_seconds)
            if utcnow() - rows[0].created_at < window and len(rows) < settings.escrow_max_batch:
                return
            relayer = self.relayer_address
            good: list[SessionRow] = []
            for row in rows:
                # Batches are all-or-nothing: what would revert is refused here, with its reason.
                problem = self.reader.simulate_open(open_request(row), relayer)
                if problem is not None:
                    reason = f"the escrow refused the open: {problem}"
                    tx.move(row, State.REJECTED, reason)
                    tx.emit(
                        SessionCancelled(session_id=row.session_id, reason=reason), row.session_id
                    )
                else:
                    good.append(row)
            retries = [r for r in good if r.attempts > 0]
            fresh = [r for r in good if r.attempts == 0]
            for group in [[r] for r in retries] + ([fresh] if fresh else []):
                stage(self.core, tx, "open", group, settings.escrow_relayer_key)
                for row in group:
                    tx.move(row, State.OPENING)

    def batch_settlements(self) -> None:
        settings = self.core.settings
        with self.core.tx() as tx:
            query = (
                sa.select(SessionRow)
                .where(SessionRow.state == State.STOPPED.value)
                .order_by(SessionRow.stopped_at)
                .limit(settings.escrow_max_batch)
            )
            rows = list(tx.session.scalars(self.core.select_for_work(query)))
            if not rows:
                return
            # A failed settle leaves its op on the row (close_op) and goes back alone at once;
            # ``attempts`` is no guide, it also counts failed opens. The window is the fresh
            # sessions': it runs from the first of them to stop, so a retry neither opens nor
            # shortens it.
            retries = [r for r in rows if r.close_op is not None]
            fresh = [r for r in rows if r.close_op is None]
            delay = timedelta(seconds=settings.escrow_settle_delay_seconds)
            oldest = min((r.stopped_at or r.updated_at for r in fresh), default=None)
            waiting = (
                oldest is not None
                and utcnow() - oldest < delay
                and len(rows) < settings.escrow_max_batch
            )
            for row in retries:
                stage(self.core, tx, "settle", [row], settings.settler_key(row.cpo_id))
                tx.move(row, State.SETTLING)
            if waiting:
                return
            groups: dict[str, list[SessionRow]] = defaultdict(list)
            for row in fresh:
                groups[settings.settler_key(row.cpo_id)].append(row)
            for key, group in groups.items():
                stage(self.core, tx, "settle", group, key)
                for row in group:
                    tx.move(row, State.SETTLING)

    # -- the sweeper -------------------------------------------------------------------------
    def sweep(self) -> None:
        settings = self.core.settings
        now = utcnow()
        with self.core.tx() as tx:
            rows = list(
                tx.session.scalars(
                    self.core.select_for_work(
                        sa.select(SessionRow).where(
                            SessionRow.state.in_(
                                [
                                    State.OPEN.value,
                                    State.STARTING.value,
                                    State.CHARGING.value,
                                    State.STOPPING.value,
                                ]
                            )
                        )
                    )
                )
            )
            margin = timedelta(seconds=settings.escrow_expiry_margin_seconds)
            silence = timedelta(seconds=settings.escrow_session_timeout_seconds)
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
        """A FAILED (or stuck CANCELLING) session still open on chain past its expiry: refund."""
        chain_now = self.reader.chain_time()
        with self.core.tx() as tx:
            rows = list(
                tx.session.scalars(
                    self.core.select_for_work(
                        sa.select(SessionRow).where(
                            SessionRow.state.in_([State.FAILED.value, State.CANCELLING.value])
                        )
                    )
                )
            )
            for row in rows:
                if row.expiry.timestamp() > chain_now:
                    continue
                op = tx.session.get(ChainOp, row.close_op) if row.close_op else None
                if op is not None and op.status in ("new", "sent"):
                    continue
                if self.reader.session(bytes.fromhex(row.chain_session_id[2:])).state is not (
                    SessionState.OPEN
                ):
                    continue
                row.attempts += 1
                stage_close(self.core, tx, [row], "refund")

    def _gauges(self) -> None:
        with self.core.tx() as tx:
            counts = dict(
                tx.session.execute(
                    sa.select(SessionRow.state, sa.func.count()).group_by(SessionRow.state)
                ).all()
            )
            oldest = tx.session.scalar(
                sa.select(SessionRow.stopped_at)
                .where(SessionRow.state.in_([State.STOPPED.value, State.SETTLING.value]))
                .order_by(SessionRow.stopped_at)
                .limit(1)
            )
        for state in State:
            SESSIONS.labels(state.value).set(int(counts.get(state.value, 0)))
        lag = 0.0 if oldest is None else (utcnow() - oldest).total_seconds()
        SETTLEMENT_LAG.set(max(lag, 0.0))
