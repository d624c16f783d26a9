"""Tracking: learn every open transaction's fate in a few batched calls per poll.

Each poll asks for the latest block and, per account, the mined transaction count. Every open
record with a nonce below that count has been decided on chain: one batch of receipt requests
(all attempts' hashes) says which attempt won and whether it reverted. Records with enough
confirmations are checked once more (still in the same block?) and become FINAL. The head of an
account's queue that has not moved for ``stuck_after`` seconds is re-sent with a higher fee.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from chargenet.core.aio import wait_event
from chargenet.signer.abi import decode_revert
from chargenet.signer.engine import Engine, Lane
from chargenet.signer.metrics import FEES, TRANSACTION_GAS, TRANSACTIONS
from chargenet.signer.records import TERMINAL, Attempt, Request, Status, TxRecord
from chargenet.signer.rpc import RpcError, RpcUnavailable
from chargenet.signer.store import Change

log = logging.getLogger(__name__)

#: Seconds a nonce may stay used on chain without a receipt for any of our hashes before the
#: record is given up (a receipt can lag the nonce on some nodes, load-balanced ones most). Time,
#: not polls: a broadcast starts a poll, so under load dozens of them pass within a second.
LOST_AFTER_SECONDS = 30.0


@dataclass
class _Found:
    record: TxRecord
    receipts: dict[str, dict[str, Any] | None]
    #: A receipt call failed: "no receipt" is then not known, only not answered.
    unanswered: bool = False


#: The poll interval while no transaction is open (a broadcast still wakes the tracker at once).
_IDLE_POLL_SECONDS = 1.0


class Tracker:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="signer-tracker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        engine = self.engine
        while True:
            # Cleared before the poll: a broadcast during it makes the next one come at once.
            engine.broadcasted.clear()
            try:
                await self.poll()
            except (RpcUnavailable, RpcError) as error:
                log.warning("tracker: node unavailable: %s", error)
            except Exception:
                log.exception("tracker: poll failed")
            # Swept here because this loop wakes at least once a second anyway.
            engine.drop_idle_lanes(time.monotonic())
            # One poll per interval serves every open transaction, however many there are; a
            # broadcast starts one at once (an automining node has decided by then, and on any
            # other chain it costs one batched call). With nothing open, only the head and the
            # base fee are refreshed, and an offer of twice the base fee absorbs a second's
            # drift: polling as often then only kept the node and this process busy.
            open_lanes = any(lane.open for lane in engine.lanes.values())
            interval = engine.config.poll_seconds
            if not open_lanes:
                interval = max(interval, _IDLE_POLL_SECONDS)
            await wait_event(engine.broadcasted, interval)

    async def poll(self) -> None:
        engine = self.engine
        lanes = [lane for lane in engine.lanes.values() if lane.open]
        answers = await engine.rpc.batch(
            [("eth_getBlockByNumber", ["latest", False])]
            + [("eth_getTransactionCount", [lane.address, "latest"]) for lane in lanes]
        )
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        block = answers[0]
        engine.base_fee = int(block.get("baseFeePerGas") or "0x0", 16)
        engine.head = int(block["number"], 16)
        now = time.monotonic()
        found: list[_Found] = []
        for lane, count_hex in zip(lanes, answers[1:], strict=True):
            count = int(count_hex, 16)
            if count != lane.mined_count:
                lane.mined_count = count
                lane.progress_at = now
            found.extend(self._decided(lane))
        await self._resolve(found)
        for lane in lanes:
            await self._unstick(lane, now)

    def _decided(self, lane: Lane) -> list[_Found]:
        confirmations = self.engine.config.confirmations
        decided = []
        for record in lane.open.values():
            assert record.nonce is not None
            if record.status is Status.PENDING and record.nonce < lane.mined_count:
                decided.append(_Found(record, {a.tx_hash: None for a in record.attempts}))
            elif (
                record.status is Status.MINED
                and record.block_number is not None
                and self.engine.head - record.block_number + 1 >= confirmations
            ):
                decided.append(_Found(record, {record.tx_hash or "": None}))
        return decided

    async def _resolve(self, found: list[_Found]) -> None:
        if not found:
            return
        engine = self.engine
        calls = [
            ("eth_getTransactionReceipt", [tx_hash]) for item in found for tx_hash in item.receipts
        ]
        answers = iter(await engine.rpc.batch(calls))
        for item in found:
            for tx_hash in item.receipts:
                answer = next(answers)
                item.receipts[tx_hash] = answer if isinstance(answer, dict) else None
                item.unanswered = item.unanswered or isinstance(answer, Exception)
        changes: list[tuple[TxRecord, Change]] = []
        reverted: list[tuple[TxRecord, Change]] = []
        for item in found:
            change = self._judge(item)
            if change is None:
                continue
            changes.append((item.record, change))
            if change.status is Status.FAILED and change.receipt is not None:
                reverted.append((item.record, change))
        if reverted:
            await self._explain(reverted)
        if not changes:
            return
        await asyncio.to_thread(engine.store.apply, [change for _, change in changes])
        for record, change in changes:
            self._apply(record, change)

    def _judge(self, item: _Found) -> Change | None:
        record = item.record
        confirmations = self.engine.config.confirmations
        if record.status is Status.MINED:
            receipt = item.receipts.get(record.tx_hash or "")
            if receipt is None and item.unanswered:
                return None
            if receipt is None:
                log.warning("%s left the chain (reorg); back to pending", record.tx_hash)
                record.unsent = True
                return Change(record.id, Status.PENDING, tx_hash=record.latest.tx_hash)
            if receipt["blockHash"] != record.block_hash:
                return _mined(record, receipt, Status.MINED)
            return _mined(record, receipt, Status.FINAL)
        winner = next(((tx_hash, r) for tx_hash, r in item.receipts.items() if r is not None), None)
        if winner is None:
            if item.unanswered:
                return None
            now = time.monotonic()
            if record.unseen_since is None:
                record.unseen_since = now
            if now - record.unseen_since < LOST_AFTER_SECONDS:
                return None
            return Change(
                record.id,
                Status.FAILED,
                tx_hash=record.tx_hash,
                error=f"nonce {record.nonce} was used by a transaction the signer did not send",
            )
        _, receipt = winner
        if int(receipt["status"], 16) == 0:
            return _mined(record, receipt, Status.FAILED)
        depth = self.engine.head - int(receipt["blockNumber"], 16) + 1
        return _mined(record, receipt, Status.FINAL if depth >= confirmations else Status.MINED)

    async def _explain(self, reverted: list[tuple[TxRecord, Change]]) -> None:
        """Revert reasons: replay each reverted call on the state its block started from."""
        calls = []
        for record, change in reverted:
            block = max(0, (change.block_number or 1) - 1)
            call = {
                "from": record.from_address,
                "to": record.to_address,
                "data": "0x" + record.data.hex(),
                "value": hex(record.value_wei),
                "gas": hex(record.gas_limit),
            }
            calls.append(("eth_call", [call, hex(block)]))
        answers = await self.engine.rpc.batch(calls)
        for (record, change), answer in zip(reverted, answers, strict=True):
            receipt = json.loads(change.receipt or "{}")
            if isinstance(answer, RpcError):
                data = answer.revert_data()
                change.revert_reason = (
                    decode_revert(data, self.engine.errors) if data is not None else answer.message
                )
            elif receipt.get("gas_used") == record.gas_limit:
                change.revert_reason = "out of gas"
            else:
                change.revert_reason = "reverted (the replay did not revert; reason unknown)"

    def _apply(self, record: TxRecord, change: Change) -> None:
        engine = self.engine
        if record.status is Status.PENDING and change.status is not Status.PENDING:
            _count(record, change)
        record.status = change.status
        record.tx_hash = change.tx_hash
        record.block_number = change.block_number
        record.block_hash = change.block_hash
        record.receipt = json.loads(change.receipt) if change.receipt else None
        record.revert_reason = change.revert_reason or record.revert_reason
        record.error = change.error or record.error
        lane = engine.lanes.get(record.from_address)
        if lane is not None:
            if record.status in TERMINAL and record.nonce is not None:
                lane.open.pop(record.nonce, None)
            # Leaving PENDING frees a slot too: with more than one confirmation required, waiting
            # for FINAL could wait for blocks that only this lane's transactions would make.
            lane.room.set()
        engine._notify(record)

    async def _unstick(self, lane: Lane, now: float) -> None:
        engine = self.engine
        resend = [
            r
            for r in lane.open.values()
            if r.status is Status.PENDING
            and r.unsent
            and not r.underpriced
            and now - r.sent_at > 1.0
        ]
        head = lane.open.get(lane.mined_count)
        # A head not yet broadcast (sent_at 0) is waiting for the broadcaster, not stuck.
        if head is not None and head.status is Status.PENDING and head.sent_at > 0:
            waited = now - max(lane.progress_at, head.sent_at)
            stuck = (head.unsent and head.underpriced) or waited > engine.config.stuck_after
            if stuck and await self._bump(lane, head):
                resend = [r for r in resend if r is not head]
        if resend:
            await engine.broadcast(lane, resend)

    async def _bump(self, lane: Lane, record: TxRecord) -> bool:
        engine = self.engine
        latest = record.latest
        offer = engine.config.fees.bump(
            latest.max_fee_per_gas, latest.max_priority_fee_per_gas, engine.base_fee
        )
        if offer is None:
            log.error("%s is stuck and the fee cap allows no higher fee", record.tx_hash)
            return False
        max_fee, tip = offer
        request = _as_request(record)
        assert record.nonce is not None
        attempt: Attempt = engine._sign(lane.key, request, record.nonce, max_fee, tip)
        await asyncio.to_thread(engine.store.add_attempt, record.id, attempt)
        log.warning(
            "re-sending nonce %d of %s with max fee %d (was %d): %s replaces %s",
            record.nonce,
            lane.key.alias,
            max_fee,
            latest.max_fee_per_gas,
            attempt.tx_hash,
            latest.tx_hash,
        )
        record.attempts.append(attempt)
        record.tx_hash = attempt.tx_hash
        engine._notify(record)
        await engine.broadcast(lane, [record])
        return True


def _count(record: TxRecord, change: Change) -> None:
    """Metrics for a transaction leaving PENDING (once per record: PENDING is never re-entered)."""
    TRANSACTIONS.labels(change.status.value.lower()).inc()
    receipt = json.loads(change.receipt) if change.receipt else None
    if receipt:
        gas = int(receipt.get("gas_used", 0))
        TRANSACTION_GAS.labels(record.function).observe(gas)
        FEES.inc(gas * int(receipt.get("effective_gas_price", 0)))


def _as_request(record: TxRecord) -> Request:
    return Request(
        caller=record.caller,
        idempotency_key=record.idempotency_key,
        fingerprint=record.fingerprint,
        from_key=record.from_key,
        from_address=record.from_address,
        to_address=record.to_address,
        function=record.function,
        data=record.data,
        value_wei=record.value_wei,
        gas_limit=record.gas_limit,
    )


def _mined(record: TxRecord, receipt: dict[str, Any], status: Status) -> Change:
    return Change(
        record.id,
        status,
        tx_hash=str(receipt["transactionHash"]),
        block_number=int(receipt["blockNumber"], 16),
        block_hash=str(receipt["blockHash"]),
        receipt=json.dumps(_receipt_summary(receipt)),
    )


def _receipt_summary(receipt: dict[str, Any]) -> dict[str, Any]:
    return {
        "block_number": int(receipt["blockNumber"], 16),
        "block_hash": receipt["blockHash"],
        "transaction_index": int(receipt.get("transactionIndex") or "0x0", 16),
        "gas_used": int(receipt["gasUsed"], 16),
        "effective_gas_price": int(receipt.get("effectiveGasPrice") or "0x0", 16),
        "success": int(receipt["status"], 16) == 1,
        "logs": [
            {
                "address": log_entry["address"],
                "topics": list(log_entry["topics"]),
                "data": log_entry["data"],
                "log_index": int(log_entry.get("logIndex") or "0x0", 16),
            }
            for log_entry in receipt.get("logs", [])
        ],
    }
