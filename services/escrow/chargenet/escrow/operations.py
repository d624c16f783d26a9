"""Chain operations through the signer: staged with their sessions' transition, sent, followed.

Idempotency keys derive from the sessions: ``escrow.open.<session>.<attempt>`` for one session,
``escrow.open-batch.<digest of the session ids>`` for a batch (likewise settle, cancel, refund),
so a crash between staging and sending, or a lost answer, re-sends under the same key and the
signer returns the one transaction it made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import grpc
import sqlalchemy as sa

from chargenet.core.events import (
    EscrowOpened,
    SessionCancelled,
    SessionFailed,
    SessionRefunded,
    SessionSettled,
)
from chargenet.core.signer_client import (
    SignerClient,
    SignerError,
    Transaction,
    TransactionStream,
    TxStatus,
)
from chargenet.escrow.core import EscrowCore, Tx, Work, utcnow
from chargenet.escrow.metrics import BATCH_SIZE, GAS_USED, SETTLED_TOKENS, TRANSACTION_GAS
from chargenet.escrow.models import ChainOp, SessionRow
from chargenet.escrow.states import State

log = logging.getLogger(__name__)

#: Batches that wait for an operation of a kind on its way (``in_flight``).
_WAITING = {"open": Work.OPENS, "settle": Work.SETTLES}
#: Signer answers that no retry can change: the operation failed.
_PERMANENT = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)
_FUNCTIONS = {
    "open": ("openFromDeposit", "openBatch"),
    "settle": ("settle", "settleBatch"),
    "cancel": ("cancel", None),
    "refund": ("refund", None),
}


def _hex(value: str) -> str:
    return value if value.startswith("0x") else "0x" + value


def open_request(row: SessionRow) -> tuple[bytes, bytes, int, int, bytes, bytes]:
    """The escrow's ``OpenRequest`` from the driver's authorisation in the request."""
    data = row.request_data()
    return (
        bytes.fromhex(row.chain_session_id[2:]),
        bytes.fromhex(row.station_id.removeprefix("0x")),
        row.max_amount,
        int(row.expiry.timestamp()),
        bytes.fromhex(str(data["authorisation_r"]).removeprefix("0x")),
        bytes.fromhex(str(data["authorisation_vs"]).removeprefix("0x")),
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return str(value)
    return value


def _alone_op_id(kind: str, session_id: str, attempt: int) -> str:
    return f"escrow.{kind}.{session_id}.{attempt}"[:200]


def _op_id(kind: str, rows: Sequence[SessionRow]) -> str:
    if len(rows) == 1:
        return _alone_op_id(kind, rows[0].session_id, rows[0].attempts)
    digest = hashlib.sha256()
    for row in rows:
        digest.update(f"{row.session_id}.{row.attempts}\0".encode())
    return f"escrow.{kind}-batch.{digest.hexdigest()[:40]}"


def stage(core: EscrowCore, tx: Tx, kind: str, rows: Sequence[SessionRow], key: str) -> ChainOp:
    """Write the chain operation for ``rows`` (sent after this transaction commits)."""
    single, batch = _FUNCTIONS[kind]
    if kind == "open":
        items: list[Any] = [open_request(r) for r in rows]
    elif kind == "settle":
        items = [
            (bytes.fromhex(r.chain_session_id[2:]), r.amount_settled or 0, _bytes32(r.cdr_hash))
            for r in rows
        ]
    else:
        items = [bytes.fromhex(r.chain_session_id[2:]) for r in rows]
    if len(rows) > 1 and batch is not None:
        function, args = batch, [items]
    elif kind == "settle":
        function, args = single, list(items[0])  # settle(sessionId, amount, cdrHash)
    else:
        function, args = single, [items[0]]
    op = ChainOp(
        id=_op_id(kind, rows),
        kind=kind,
        function=function,
        key_alias=key,
        args=json.dumps(_jsonable(args)),
        sessions=json.dumps([r.session_id for r in rows]),
        status="new",
    )
    tx.session.merge(op)
    tx.work.add(Work.SENDS)
    for row in rows:
        if kind == "open":
            row.open_op = op.id
        else:
            row.close_op = op.id
    BATCH_SIZE.labels(function).observe(len(rows))
    return op


def open_or_wait(core: EscrowCore, tx: Tx, rows: Sequence[SessionRow]) -> bool:
    """Stage the open of these requested sessions (oldest first, at most ``escrow_max_batch``),
    or False: they wait to go with the next open, as one is on its way and their window is not
    over. With none on its way nothing is gained by waiting; a full batch goes at once."""
    settings = core.settings
    window = timedelta(seconds=settings.escrow_open_window_seconds)
    if (
        utcnow() - rows[0].created_at < window
        and len(rows) < settings.escrow_max_batch
        and in_flight(tx, "open", settings.escrow_relayer_key)
    ):
        return False
    stage_opens(core, tx, rows)
    return True


def stage_opens(core: EscrowCore, tx: Tx, rows: Sequence[SessionRow]) -> None:
    """Open ``rows``: each retry alone, the fresh ones as one batch.

    No dry run of ours: the signer's gas estimate is one, on the node, before anything is
    broadcast. A batch it refuses (one open would revert: batches are all or nothing) puts its
    sessions back with one attempt more, and each is then sent alone, so the chain decides each
    and the one at fault fails with the revert's name. The common case, where every open is
    fine, saves a node call on the start path; a bad request costs the others one round trip.
    """
    key = core.settings.escrow_relayer_key
    # The contract takes a driver's nonces only in increasing order, and one driver's requests
    # can arrive out of order (they are keyed by session, so on different partitions). The
    # chain's session id is driver << 96 | nonce: in its order, each driver's nonces increase.
    ordered = sorted(rows, key=lambda r: int(r.chain_session_id, 16))
    retries = [r for r in ordered if r.attempts > 0]
    fresh = [r for r in ordered if r.attempts == 0]
    for group in [[r] for r in retries] + ([fresh] if fresh else []):
        stage(core, tx, "open", group, key)
        for row in group:
            tx.move(row, State.OPENING)


def _failed_alone(tx: Tx, row: SessionRow) -> int:
    """How many of ``row``'s settlements sent alone failed. Only those are its own failures: a
    batch fails whole for one bad session, and ``attempts`` also counts failed opens."""
    ids = [_alone_op_id("settle", row.session_id, n) for n in range(row.attempts + 1)]
    count = tx.session.scalar(
        sa.select(sa.func.count())
        .select_from(ChainOp)
        .where(ChainOp.id.in_(ids), ChainOp.status == "failed")
    )
    return int(count or 0)


def in_flight(tx: Tx, kind: str, key: str) -> bool:
    """An operation of ``kind`` from ``key`` is staged or sent and not yet decided."""
    found = tx.session.scalar(
        sa.select(ChainOp.id)
        .where(
            ChainOp.kind == kind,
            ChainOp.key_alias == key,
            ChainOp.status.in_(("new", "sent")),
        )
        .limit(1)
    )
    return found is not None


def _bytes32(value: str | None) -> bytes:
    if not value:
        return b"\0" * 32
    return bytes.fromhex(value.removeprefix("0x"))


def stage_close(core: EscrowCore, tx: Tx, rows: Sequence[SessionRow], kind: str) -> None:
    """Cancel (the CPO's operator key) or refund (the relayer: anyone may, after expiry)."""
    for row in rows:
        key = (
            core.settings.escrow_relayer_key
            if kind == "refund"
            else core.settings.settler_key(row.cpo_id)
        )
        stage(core, tx, kind, [row], key)


class Operations:
    """Sends staged operations and applies their outcomes to the sessions.

    Outcomes arrive on a ``WatchTransactions`` stream the moment the signer learns them
    (:meth:`follow`, its own thread); :meth:`poll` asks for each operation the stream may have
    missed (sent while it was down or reconnecting) and is the only way when it never connects.
    """

    def __init__(self, core: EscrowCore, signer: SignerClient) -> None:
        self.core = core
        self.signer = signer
        self._stream: TransactionStream | None = None
        self._stopped = threading.Event()
        #: Set while the stream is connected; the poll then skips recently sent operations.
        self.following = threading.Event()
        self._senders = ThreadPoolExecutor(
            max_workers=core.settings.escrow_senders, thread_name_prefix="escrow-sender"
        )
        #: Operations handed to a sender and not back yet (none goes to two senders at once).
        self._sending: set[str] = set()
        self._sending_lock = threading.Lock()

    def send_new(self) -> int:
        """Hand the staged operations to the sender threads; returns how many were handed over.

        The caller (the worker) does not wait for the signer, so it keeps staging batches while
        operations are on their way; different operations are sent side by side.
        """
        with self.core.tx() as tx:
            ops = list(tx.session.scalars(sa.select(ChainOp).where(ChainOp.status == "new")))
        handed = 0
        for op in ops:
            with self._sending_lock:
                if op.id in self._sending:
                    continue
                self._sending.add(op.id)
            self._senders.submit(self._send_once, op)
            handed += 1
        return handed

    def _send_once(self, op: ChainOp) -> None:
        try:
            self._send(op)
        except Exception:
            # Still "new": the worker's next tick hands it over again.
            log.exception("sending %s failed", op.id)
        finally:
            with self._sending_lock:
                self._sending.discard(op.id)

    def close(self) -> None:
        """Wait for the sends under way (an operation not yet sent is sent after a restart)."""
        self._senders.shutdown(wait=True, cancel_futures=True)

    def _send(self, op: ChainOp) -> None:
        try:
            sent = self.signer.send_transaction(
                op.id,
                op.key_alias,
                op.function,
                json.loads(op.args),
                contract=self.core.settings.escrow_contract_name,
            )
        except SignerError as error:
            if error.code in _PERMANENT:
                self.apply(op.id, None, f"the signer refused: {error.detail}")
            else:
                log.warning("sending %s failed (will retry): %s", op.id, error)
            return
        self.mark_sent(op.id, sent.tx_hash)
        if sent.status.is_terminal:
            self.apply(op.id, sent, None)

    def mark_sent(self, op_id: str, tx_hash: str) -> None:
        """Record that the signer has the operation, unless its outcome is already applied.

        One conditional update, not a read then a write: the stream may apply the outcome in
        between (automine decides within milliseconds), and "sent" written over "final" had the
        sweeper apply it a second time, a second later.
        """
        with self.core.tx() as tx:
            tx.session.execute(
                sa.update(ChainOp)
                .where(ChainOp.id == op_id, ChainOp.status == "new")
                .values(status="sent", tx_hash=tx_hash or None, updated_at=utcnow())
            )

    def follow(self, on_change: Callable[[], None] = lambda: None) -> None:
        """Apply outcomes as the signer streams them, until :meth:`stop_following`.

        Reconnects after a drop; every (re)connection is followed by ``on_change`` so the
        caller polls once for what finished while nobody listened. An outcome applied wakes the
        worker through its commit (``Tx.work``), for the batches that waited for it.
        """
        while not self._stopped.is_set():
            stream = self.signer.stream(send_initial=False)
            self._stream = stream
            if self._stopped.is_set():
                stream.cancel()
                return
            try:
                self.following.set()
                on_change()
                for tx_info in stream:
                    if tx_info.status.is_terminal:
                        self.apply(tx_info.idempotency_key, tx_info, None)
            except SignerError as error:
                if not self._stopped.is_set():
                    log.warning("transaction stream lost (%s); reconnecting", error)
            except Exception:
                log.exception("applying a streamed outcome failed; reconnecting")
            finally:
                self.following.clear()
            self._stopped.wait(0.5)

    def stop_following(self) -> None:
        self._stopped.set()
        if self._stream is not None:
            self._stream.cancel()

    def poll(self, older_than: float = 0.0) -> int:
        """Ask the signer about every sent operation (sent more than ``older_than`` seconds ago)."""
        cutoff = utcnow() - timedelta(seconds=older_than)
        with self.core.tx() as tx:
            ids = list(
                tx.session.scalars(
                    sa.select(ChainOp.id).where(
                        ChainOp.status == "sent", ChainOp.updated_at <= cutoff
                    )
                )
            )
        done = 0
        for op_id in ids:
            try:
                tx_info = self.signer.get_transaction(idempotency_key=op_id)
            except SignerError as error:
                log.warning("following %s failed: %s", op_id, error)
                continue
            if tx_info.status.is_terminal:
                self.apply(op_id, tx_info, None)
                done += 1
        return done

    def apply(self, op_id: str, sent: Transaction | None, refused: str | None) -> None:
        """The operation reached FINAL or FAILED: move its sessions on, in one transaction."""
        with self.core.tx() as tx:
            # Locked: the stream and the poll (or two replicas) may report the same outcome.
            op = tx.session.get(ChainOp, op_id, with_for_update=self.core.db.is_postgres)
            if op is None or op.status in ("final", "failed"):
                return
            # What waited for this operation may go now.
            if (waiting := _WAITING.get(op.kind)) is not None:
                tx.work.add(waiting)
            ok = (
                sent is not None
                and sent.status is TxStatus.FINAL
                and (sent.receipt is None or sent.receipt.success)
            )
            op.status = "final" if ok else "failed"
            op.updated_at = utcnow()
            if sent is not None:
                op.tx_hash = sent.tx_hash or op.tx_hash
                if sent.receipt is not None:
                    op.gas_used = sent.receipt.gas_used
                    gas, function = sent.receipt.gas_used, op.function
                    tx.after_commit(lambda: GAS_USED.labels(function).inc(gas))
                    tx.after_commit(lambda: TRANSACTION_GAS.labels(function).observe(gas))
            if not ok:
                op.error = (
                    refused or (sent.revert_reason or sent.error if sent else None) or "failed"
                )
            self.core.lock_all(tx, op.session_ids())  # in session id order: no deadlock
            rows = [self.core.locked(tx, sid) for sid in op.session_ids()]
            for row in rows:
                if row is None:
                    continue
                if ok:
                    self._succeeded(tx, op, row)
                else:
                    self._failed(tx, op, row, len(rows))

    def _succeeded(self, tx: Tx, op: ChainOp, row: SessionRow) -> None:
        tx_hash = op.tx_hash or ""
        state = State(row.state)
        if op.kind == "open" and state is State.OPENING and row.open_op == op.id:
            tx.move(row, State.OPEN)
            row.open_tx_hash = tx_hash
            tx.emit(
                EscrowOpened(
                    session_id=row.session_id,
                    cpo_id=row.cpo_id,
                    station_id=row.station_id,
                    charge_point_id=row.charge_point_id,
                    connector_id=row.connector_id,
                    id_token=row.id_token,
                    max_amount=row.max_amount,
                    expires_at=row.expiry,
                    tx_hash=tx_hash,
                ),
                row.session_id,
            )
            # Started in the same transaction: the start command is on its way with the event
            # (a second transaction per open batch cost a commit on the start path).
            self.core.start(tx, row)
        elif op.kind == "settle" and state is State.SETTLING and row.close_op == op.id:
            tx.move(row, State.SETTLED)
            row.close_tx_hash = tx_hash
            data = row.request_data()
            amount = row.amount_settled or 0
            tx.after_commit(lambda: SETTLED_TOKENS.inc(amount))
            tx.emit(
                SessionSettled(
                    session_id=row.session_id,
                    cpo_id=row.cpo_id,
                    driver_id=row.driver_id,
                    station_id=row.station_id,
                    evse_id=row.evse_id,
                    amount_locked=row.max_amount,
                    amount_settled=amount,
                    cdr=json.loads(row.cdr or "{}"),
                    cdr_hash=row.cdr_hash or "",
                    tariff=data["tariff"],
                    settlement_tx_hash=tx_hash,
                    meter_verified=row.meter_verified,
                    signed_meter_data=json.loads(row.signed_meter_data),
                    # cost_so_far holds the price the close computed: above the amount, capped.
                    price_before_cap=row.cost_so_far if row.cost_so_far > amount else None,
                    # Extra fields (allowed by EventData) for the wallet's view.
                    amount_returned=row.max_amount - amount,
                    time_zone=data.get("time_zone") or "UTC",
                ),
                row.session_id,
            )
        elif op.kind in ("cancel", "refund") and state in (State.CANCELLING, State.FAILED):
            tx.move(row, State.REFUNDED)
            row.close_tx_hash = tx_hash
            tx.emit(
                SessionRefunded(session_id=row.session_id, amount=row.max_amount, tx_hash=tx_hash),
                row.session_id,
            )

    def _failed(self, tx: Tx, op: ChainOp, row: SessionRow, batch: int) -> None:
        state = State(row.state)
        reason = f"{op.function} failed: {op.error}"
        row.attempts += 1
        if op.kind == "open" and state is State.OPENING and row.open_op == op.id:
            if batch > 1:
                tx.move(row, State.REQUESTED, reason)  # retried alone
            else:
                tx.move(row, State.REJECTED, reason)
                tx.emit(SessionCancelled(session_id=row.session_id, reason=reason), row.session_id)
        elif op.kind == "settle" and state is State.SETTLING and row.close_op == op.id:
            budget = self.core.settings.escrow_settle_attempts
            if batch == 1 and _failed_alone(tx, row) >= budget:
                tx.move(row, State.FAILED, reason)
                tx.emit(SessionFailed(session_id=row.session_id, reason=reason), row.session_id)
            else:
                tx.move(row, State.STOPPED, reason)
        elif op.kind == "cancel" and state is State.CANCELLING:
            # The driver's refund after the expiry stays open: the sweeper sends it.
            tx.move(row, State.FAILED, reason)
            tx.emit(SessionFailed(session_id=row.session_id, reason=reason), row.session_id)
        elif op.kind == "refund":
            row.reason = reason
