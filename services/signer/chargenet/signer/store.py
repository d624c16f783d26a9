"""Database operations of the signer; each function is one transaction (called off the event loop).

The order of events that makes a crash harmless: nonce, signed raw transaction and record commit
together BEFORE the first broadcast. A crash before the commit leaves no trace (the caller's retry
starts afresh); a crash after it leaves a record that the restart re-broadcasts byte for byte, so
the node sees the same hash and never a second transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chargenet.core.db import Database
from chargenet.signer.models import AccountRow, AttemptRow, TransactionRow, utcnow
from chargenet.signer.records import Attempt, Request, Status, TxRecord

OPEN = (Status.PENDING.value, Status.MINED.value)
T = TypeVar("T")


class IdempotencyConflict(Exception):
    """The key was used before for a different request."""


@dataclass
class Change:
    """A status change the tracker found, applied in one transaction with the others."""

    record_id: int
    status: Status
    tx_hash: str | None = None
    block_number: int | None = None
    block_hash: str | None = None
    receipt: str | None = None
    revert_reason: str | None = None
    error: str | None = None


class SignerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- reads ---------------------------------------------------------------------------------

    def find(self, caller: str, key: str) -> TxRecord | None:
        with self.db.session() as session:
            row = session.scalar(
                sa.select(TransactionRow).where(
                    TransactionRow.caller == caller, TransactionRow.idempotency_key == key
                )
            )
            return _record(session, row) if row is not None else None

    def find_many(self, caller: str, keys: Sequence[str]) -> list[TxRecord]:
        records: list[TxRecord] = []
        with self.db.session() as session:
            for start in range(0, len(keys), 500):
                rows = session.scalars(
                    sa.select(TransactionRow).where(
                        TransactionRow.caller == caller,
                        TransactionRow.idempotency_key.in_(keys[start : start + 500]),
                    )
                ).all()
                records.extend(_records(session, rows))
        return records

    def find_by_hash(self, caller: str, tx_hash: str) -> TxRecord | None:
        with self.db.session() as session:
            row = session.scalar(
                sa.select(TransactionRow)
                .join(AttemptRow, AttemptRow.transaction_id == TransactionRow.id)
                .where(AttemptRow.tx_hash == tx_hash, TransactionRow.caller == caller)
            )
            return _record(session, row) if row is not None else None

    def open_records(self) -> list[TxRecord]:
        with self.db.session() as session:
            rows = session.scalars(
                sa.select(TransactionRow)
                .where(TransactionRow.status.in_(OPEN))
                .order_by(TransactionRow.from_address, TransactionRow.nonce)
            ).all()
            return _records(session, rows)

    def next_nonce(self, address: str) -> int | None:
        with self.db.session() as session:
            row = session.get(AccountRow, address)
            return row.next_nonce if row is not None else None

    # -- writes --------------------------------------------------------------------------------

    def ensure_account(self, address: str, chain_nonce: int) -> tuple[int, int]:
        """Create the account at the chain's nonce, or move it forward past transactions sent by
        someone else with this key. Returns (before, after)."""
        with self.db.session() as session:
            row = _lock_account(session, address)
            if row is None:
                session.add(AccountRow(address=address, next_nonce=chain_nonce))
                return chain_nonce, chain_nonce
            before = row.next_nonce
            row.next_nonce = max(before, chain_nonce)
            return before, row.next_nonce

    def insert_batch(
        self,
        address: str,
        requests: Sequence[Request],
        sign: Callable[[Request, int], Attempt],
    ) -> list[tuple[TxRecord, bool]]:
        """Give each request the account's next nonce, sign it, and store it; all or nothing.

        A request whose key already exists returns the existing record (created=False), unless it
        differs, which raises ``IdempotencyConflict`` for the whole batch (the caller splits it).
        Set-based statements (one lookup, one multi-row insert each) because this runs for every
        transaction the signer sends.
        """
        return _again_if_raced(lambda: self._insert_batch(address, requests, sign))

    def _insert_batch(
        self,
        address: str,
        requests: Sequence[Request],
        sign: Callable[[Request, int], Attempt],
    ) -> list[tuple[TxRecord, bool]]:
        with self.db.session() as session:
            account = _lock_account(session, address)
            if account is None:
                raise RuntimeError(f"account {address} was not initialised at start")
            existing = {
                (row.caller, row.idempotency_key): row
                for row in session.scalars(
                    sa.select(TransactionRow).where(
                        TransactionRow.idempotency_key.in_({r.idempotency_key for r in requests}),
                        TransactionRow.caller.in_({r.caller for r in requests}),
                    )
                )
            }
            results: list[tuple[TxRecord, bool] | None] = []
            fresh: list[tuple[int, Request, int, Attempt]] = []
            seen: dict[tuple[str, str], int] = {}
            for position, request in enumerate(requests):
                ident = (request.caller, request.idempotency_key)
                row = existing.get(ident)
                if row is not None:
                    if row.fingerprint != request.fingerprint:
                        raise IdempotencyConflict(request.idempotency_key)
                    results.append((_record(session, row), False))
                    continue
                if ident in seen:
                    raise IdempotencyConflict(request.idempotency_key)
                seen[ident] = position
                nonce = account.next_nonce
                account.next_nonce = nonce + 1
                fresh.append((position, request, nonce, sign(request, nonce)))
                results.append(None)
            if fresh:
                now = utcnow()
                ids = session.scalars(
                    sa.insert(TransactionRow).returning(
                        TransactionRow.id, sort_by_parameter_order=True
                    ),
                    [
                        _row_values(request, nonce, Status.PENDING, attempt.tx_hash, now)
                        for _, request, nonce, attempt in fresh
                    ],
                ).all()
                session.execute(
                    sa.insert(AttemptRow),
                    [
                        _attempt_values(record_id, attempt, now)
                        for record_id, (_, _, _, attempt) in zip(ids, fresh, strict=True)
                    ],
                )
                for record_id, (position, request, nonce, attempt) in zip(ids, fresh, strict=True):
                    results[position] = (
                        _new_record(record_id, request, nonce, attempt),
                        True,
                    )
            return [result for result in results if result is not None]

    def insert_refused(self, request: Request, reason: str | None, error: str | None) -> TxRecord:
        """A request refused before signing (its estimate reverted): FAILED, no nonce used."""
        return _again_if_raced(lambda: self._insert_refused(request, reason, error))

    def _insert_refused(self, request: Request, reason: str | None, error: str | None) -> TxRecord:
        with self.db.session() as session:
            existing = session.scalar(
                sa.select(TransactionRow).where(
                    TransactionRow.caller == request.caller,
                    TransactionRow.idempotency_key == request.idempotency_key,
                )
            )
            if existing is not None:
                if existing.fingerprint != request.fingerprint:
                    raise IdempotencyConflict(request.idempotency_key)
                return _record(session, existing)
            row = _new_row(request, nonce=None, status=Status.FAILED)
            row.revert_reason = reason
            row.error = error
            session.add(row)
            session.flush()
            return _record(session, row)

    def add_attempt(self, record_id: int, attempt: Attempt) -> None:
        with self.db.session() as session:
            session.add(_attempt_row(record_id, attempt))
            session.execute(
                sa.update(TransactionRow)
                .where(TransactionRow.id == record_id)
                .values(tx_hash=attempt.tx_hash, updated_at=utcnow())
            )

    def fill_nonce(self, record_id: int, error: str, filler: Request, attempt: Attempt) -> TxRecord:
        """The node refused a record for good: fail it and give its nonce to a no-op transfer,
        so the account's later nonces do not wait behind a gap forever."""
        with self.db.session() as session:
            row = session.get(TransactionRow, record_id)
            if row is None or row.nonce is None:
                raise RuntimeError(f"record {record_id} has no nonce to fill")
            nonce = row.nonce
            row.nonce = None
            row.status = Status.FAILED.value
            row.error = error
            row.updated_at = utcnow()
            session.flush()
            filler_row = _new_row(filler, nonce=nonce, status=Status.PENDING)
            filler_row.tx_hash = attempt.tx_hash
            session.add(filler_row)
            session.flush()
            session.add(_attempt_row(filler_row.id, attempt))
            return _record(session, filler_row, [attempt])

    def apply(self, changes: Iterable[Change]) -> None:
        """All of one poll's status changes in one statement (an ORM bulk update by id)."""
        now = utcnow()
        with self.db.session() as session:
            rows = []
            for change in changes:
                values: dict[str, object] = {
                    "id": change.record_id,
                    "status": change.status.value,
                    "tx_hash": change.tx_hash,
                    "block_number": change.block_number,
                    "block_hash": change.block_hash,
                    "receipt": change.receipt,
                    "updated_at": now,
                }
                if change.revert_reason is not None:
                    values["revert_reason"] = change.revert_reason
                if change.error is not None:
                    values["error"] = change.error
                rows.append(values)
            plain = [row for row in rows if len(row) == 7]
            if plain:
                session.execute(sa.update(TransactionRow), plain)
            for row in rows:
                if len(row) != 7:
                    session.execute(sa.update(TransactionRow), [row])


def _again_if_raced(insert: Callable[[], T]) -> T:
    """Run an insert, and once more if it met a unique key: another replica inserted the same
    idempotency key after our look-up, and our insert waited for its commit. Tried again, the
    look-up sees that row and answers as for any repeat (the record, or IdempotencyConflict for
    a different request) instead of failing."""
    try:
        return insert()
    except sa.exc.IntegrityError:
        return insert()


def _lock_account(session: Session, address: str) -> AccountRow | None:
    # FOR UPDATE on PostgreSQL serialises nonce allocation across processes; SQLite serialises
    # writers by itself.
    return session.scalar(
        sa.select(AccountRow).where(AccountRow.address == address).with_for_update()
    )


def _new_row(request: Request, *, nonce: int | None, status: Status) -> TransactionRow:
    now = utcnow()
    return TransactionRow(
        caller=request.caller,
        idempotency_key=request.idempotency_key,
        fingerprint=request.fingerprint,
        from_key=request.from_key,
        from_address=request.from_address,
        to_address=request.to_address,
        function=request.function,
        data=request.data,
        value_wei=str(request.value_wei),
        gas_limit=request.gas_limit,
        nonce=nonce,
        status=status.value,
        created_at=now,
        updated_at=now,
    )


def _row_values(
    request: Request, nonce: int, status: Status, tx_hash: str, now: object
) -> dict[str, object]:
    return {
        "caller": request.caller,
        "idempotency_key": request.idempotency_key,
        "fingerprint": request.fingerprint,
        "from_key": request.from_key,
        "from_address": request.from_address,
        "to_address": request.to_address,
        "function": request.function,
        "data": request.data,
        "value_wei": str(request.value_wei),
        "gas_limit": request.gas_limit,
        "nonce": nonce,
        "status": status.value,
        "tx_hash": tx_hash,
        "created_at": now,
        "updated_at": now,
    }


def _attempt_values(record_id: int, attempt: Attempt, now: object) -> dict[str, object]:
    return {
        "tx_hash": attempt.tx_hash,
        "transaction_id": record_id,
        "raw": attempt.raw,
        "max_fee_per_gas": str(attempt.max_fee_per_gas),
        "max_priority_fee_per_gas": str(attempt.max_priority_fee_per_gas),
        "created_at": now,
    }


def _new_record(record_id: int, request: Request, nonce: int, attempt: Attempt) -> TxRecord:
    return TxRecord(
        id=record_id,
        caller=request.caller,
        idempotency_key=request.idempotency_key,
        fingerprint=request.fingerprint,
        from_key=request.from_key,
        from_address=request.from_address,
        to_address=request.to_address,
        function=request.function,
        data=request.data,
        value_wei=request.value_wei,
        gas_limit=request.gas_limit,
        nonce=nonce,
        status=Status.PENDING,
        tx_hash=attempt.tx_hash,
        attempts=[attempt],
    )


def _attempt_row(record_id: int, attempt: Attempt) -> AttemptRow:
    return AttemptRow(
        tx_hash=attempt.tx_hash,
        transaction_id=record_id,
        raw=attempt.raw,
        max_fee_per_gas=str(attempt.max_fee_per_gas),
        max_priority_fee_per_gas=str(attempt.max_priority_fee_per_gas),
        created_at=utcnow(),
    )


def _records(session: Session, rows: Sequence[TransactionRow]) -> list[TxRecord]:
    """Many records with their attempts in one query instead of one per record."""
    attempts: dict[int, list[Attempt]] = {row.id: [] for row in rows}
    for start in range(0, len(rows), 500):
        ids = [row.id for row in rows[start : start + 500]]
        for a in session.scalars(sa.select(AttemptRow).where(AttemptRow.transaction_id.in_(ids))):
            attempts[a.transaction_id].append(_attempt(a))
    return [
        _record(session, row, sorted(attempts[row.id], key=lambda a: a.max_fee_per_gas))
        for row in rows
    ]


def _attempt(row: AttemptRow) -> Attempt:
    return Attempt(
        tx_hash=row.tx_hash,
        raw=row.raw,
        max_fee_per_gas=int(row.max_fee_per_gas),
        max_priority_fee_per_gas=int(row.max_priority_fee_per_gas),
    )


def _record(
    session: Session, row: TransactionRow, attempts: list[Attempt] | None = None
) -> TxRecord:
    if attempts is None:
        attempt_rows = session.scalars(
            sa.select(AttemptRow).where(AttemptRow.transaction_id == row.id)
        )
        # Each re-send raises the fee, so fee order is send order.
        attempts = sorted((_attempt(a) for a in attempt_rows), key=lambda a: a.max_fee_per_gas)
    return TxRecord(
        id=row.id,
        caller=row.caller,
        idempotency_key=row.idempotency_key,
        fingerprint=row.fingerprint,
        from_key=row.from_key,
        from_address=row.from_address,
        to_address=row.to_address,
        function=row.function,
        data=row.data,
        value_wei=int(row.value_wei),
        gas_limit=row.gas_limit,
        nonce=row.nonce,
        status=Status(row.status),
        tx_hash=row.tx_hash,
        block_number=row.block_number,
        block_hash=row.block_hash,
        receipt=json.loads(row.receipt) if row.receipt else None,
        revert_reason=row.revert_reason,
        error=row.error,
        attempts=attempts,
    )
