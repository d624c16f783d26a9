"""Sending: one lane per account signs and stores requests in batches, then broadcasts them.

Why lanes: nonces are per account, so each account's requests go through one task in arrival
order. Each lane takes whatever has queued up (up to a batch), assigns consecutive nonces, signs
locally, commits records and nonce together, and broadcasts the batch in one JSON-RPC call. Callers
get their record as soon as it is broadcast; the tracker (``tracker.py``) learns each fate in
batches instead of one waiting caller per transaction. That pipeline is where the throughput over
send-and-wait comes from.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chargenet.signer.abi import decode_revert
from chargenet.signer.fees import FeePolicy
from chargenet.signer.keys import Eip1559, KeyRing, SigningKey
from chargenet.signer.records import Attempt, Request, Status, TxRecord
from chargenet.signer.rpc import Rpc, RpcError, RpcUnavailable
from chargenet.signer.store import IdempotencyConflict, SignerStore

log = logging.getLogger(__name__)

#: Node answers to a broadcast that mean "this exact transaction, or its nonce, is taken care of";
#: the tracker finds out which.
_HARMLESS = re.compile(
    r"already known|known transaction|already imported|nonce too low|nonce has already been used",
    re.I,
)
#: Answers that only a higher fee cures.
_FEE = re.compile(
    r"underpriced|fee.*too low|too low for the next block|max fee per gas less than", re.I
)
#: Answers no retry cures: the nonce must go to a filler so later ones are not stuck behind it.
_FATAL = re.compile(
    r"insufficient funds|intrinsic gas|exceeds block gas limit|invalid sender|chain ?id"
    r"|gas limit reached",
    re.I,
)
FILLER_CALLER = "signer"


@dataclass(frozen=True)
class EngineConfig:
    chain_id: int
    fees: FeePolicy
    confirmations: int
    stuck_after: float
    poll_seconds: float
    batch_size: int
    max_in_flight: int
    gas_margin_percent: int
    lane_idle_seconds: float


@dataclass(eq=False)
class Lane:
    key: SigningKey
    queue: asyncio.Queue[tuple[Request, asyncio.Future[tuple[TxRecord, bool]]]]
    #: Open records (PENDING or MINED) by nonce.
    open: dict[int, TxRecord] = field(default_factory=dict)
    #: The account's mined transaction count at the last poll.
    mined_count: int = 0
    progress_at: float = field(default_factory=time.monotonic)
    room: asyncio.Event = field(default_factory=asyncio.Event)
    #: Committed batches waiting for their broadcast, in nonce order.
    outbox: asyncio.Queue[list[TxRecord]] = field(default_factory=asyncio.Queue)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: Requests or batches the lane's tasks have taken off their queues and not finished with:
    #: between a queue and ``open`` they are in neither.
    busy: int = 0
    #: When a sweep first found the lane idle (None: not idle at the last sweep).
    idle_since: float | None = None

    @property
    def address(self) -> str:
        return self.key.address

    def pending(self) -> int:
        return sum(1 for record in self.open.values() if record.status is Status.PENDING)

    def idle(self) -> bool:
        """Nothing queued, nothing being signed or broadcast, no record awaiting its receipt or
        confirmations: the lane holds nothing the store and the chain do not."""
        return not self.open and not self.busy and self.queue.empty() and self.outbox.empty()


@dataclass(eq=False)
class Watcher:
    caller: str
    keys: frozenset[str] | None
    queue: asyncio.Queue[TxRecord] = field(default_factory=asyncio.Queue)


class Refused(Exception):
    """The request cannot be sent (its estimate reverted); stored as FAILED, not an RPC error."""


class Engine:
    def __init__(self, store: SignerStore, rpc: Rpc, keys: KeyRing, config: EngineConfig) -> None:
        self.store = store
        self.rpc = rpc
        self.keys = keys
        self.config = config
        self.base_fee = 0
        self.head = 0
        self.lanes: dict[str, Lane] = {}
        self._lane_lock = asyncio.Lock()
        self._inflight: dict[tuple[str, str], asyncio.Future[tuple[TxRecord, bool]]] = {}
        self._watchers: set[Watcher] = set()
        #: Set after each broadcast: the tracker polls then rather than at its next interval.
        self.broadcasted = asyncio.Event()
        #: Custom errors of every known contract by selector, to name a mined revert's error.
        self.errors: dict[bytes, tuple[str, list[str]]] = {}

    # -- submitting ------------------------------------------------------------------------------

    async def submit(
        self, request: Request, errors: dict[bytes, tuple[str, list[str]]]
    ) -> tuple[TxRecord, bool]:
        """Send once per (caller, key): a concurrent or later repeat gets the first result."""
        ident = (request.caller, request.idempotency_key)
        running = self._inflight.get(ident)
        if running is not None:
            record, _ = await asyncio.shield(running)
            if record.fingerprint != request.fingerprint:
                raise IdempotencyConflict(request.idempotency_key)
            return record, False
        future: asyncio.Future[tuple[TxRecord, bool]] = asyncio.get_running_loop().create_future()
        self._inflight[ident] = future
        try:
            result = await self._submit(request, errors)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters re-raise it, nobody else must log it
            raise
        finally:
            self._inflight.pop(ident, None)
        future.set_result(result)
        return result

    async def _submit(
        self, request: Request, errors: dict[bytes, tuple[str, list[str]]]
    ) -> tuple[TxRecord, bool]:
        # No lookup here: the lane's insert finds an existing key in the same statement that
        # reserves nonces. Only an estimate is worth a lookup first (it costs the node a call).
        if request.gas_limit == 0:
            existing = await asyncio.to_thread(
                self.store.find, request.caller, request.idempotency_key
            )
            if existing is not None:
                if existing.fingerprint != request.fingerprint:
                    raise IdempotencyConflict(request.idempotency_key)
                return existing, False
            try:
                request.gas_limit = await self._estimate(request)
            except Refused as refusal:
                record = await asyncio.to_thread(
                    self.store.insert_refused, request, decode_reason(refusal, errors), None
                )
                self._notify(record)
                return record, True
        lane = await self.lane(request.from_key)
        # No await from here to the put: a lane is dropped only while its queue is empty, by a
        # task on this loop, so the lane just found cannot go before the request is on it.
        future: asyncio.Future[tuple[TxRecord, bool]] = asyncio.get_running_loop().create_future()
        lane.queue.put_nowait((request, future))
        return await future

    async def _estimate(self, request: Request) -> int:
        call = {
            "from": request.from_address,
            "to": request.to_address,
            "data": "0x" + request.data.hex(),
            "value": hex(request.value_wei),
        }
        try:
            estimate = int(await self.rpc.call("eth_estimateGas", call), 16)
        except RpcError as error:
            if error.is_revert:
                raise Refused(error) from error
            raise
        return estimate * self.config.gas_margin_percent // 100

    # -- lanes -----------------------------------------------------------------------------------

    async def lane(self, alias: str) -> Lane:
        """The account's lane, started if there is none (again, after an idle one was dropped:
        its nonce then comes from the store, moved past the chain's pending count)."""
        key = self.keys.get(alias)
        lane = self.lanes.get(key.address)
        if lane is not None:
            return lane
        async with self._lane_lock:
            lane = self.lanes.get(key.address)
            if lane is None:
                count = int(
                    await self.rpc.call("eth_getTransactionCount", key.address, "pending"), 16
                )
                await asyncio.to_thread(self.store.ensure_account, key.address, count)
                lane = self._start_lane(key, [])
        return lane

    def drop_idle_lanes(self, now: float) -> int:
        """Stop and forget lanes idle for ``lane_idle_seconds``; how many went.

        One lane per account ever used would grow without bound with on-demand HD keys. An idle
        lane holds no state of its own (the next nonce is in the store, open records are what
        makes a lane not idle), so the next send to its account simply starts a new one.
        Synchronous on purpose: nothing can queue on a lane between the check and its removal.
        """
        dropped = []
        for lane in self.lanes.values():
            if not lane.idle():
                lane.idle_since = None
                continue
            if lane.idle_since is None:
                lane.idle_since = now
            if now - lane.idle_since >= self.config.lane_idle_seconds:
                dropped.append(lane)
        for lane in dropped:
            del self.lanes[lane.address]
            for task in lane.tasks:
                task.cancel()
        return len(dropped)

    def _start_lane(self, key: SigningKey, records: Sequence[TxRecord]) -> Lane:
        lane = Lane(key=key, queue=asyncio.Queue())
        lane.open = {record.nonce: record for record in records if record.nonce is not None}
        lane.room.set()
        lane.tasks = [
            asyncio.create_task(self._run_lane(lane), name=f"lane-{key.alias}"),
            asyncio.create_task(self._run_broadcaster(lane), name=f"broadcast-{key.alias}"),
        ]
        self.lanes[key.address] = lane
        return lane

    async def _run_lane(self, lane: Lane) -> None:
        while True:
            first = await lane.queue.get()
            lane.busy += 1
            try:
                await self._take_batch(lane, first)
            finally:
                lane.busy -= 1

    async def _take_batch(
        self, lane: Lane, first: tuple[Request, asyncio.Future[tuple[TxRecord, bool]]]
    ) -> None:
        while lane.pending() >= self.config.max_in_flight:
            lane.room.clear()
            await lane.room.wait()
        batch = [first]
        room = min(self.config.batch_size, self.config.max_in_flight - lane.pending())
        while len(batch) < room and not lane.queue.empty():
            batch.append(lane.queue.get_nowait())
        try:
            await self._send_batch(lane, batch)
        except Exception as error:
            log.exception("lane %s: batch failed", lane.key.alias)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)

    async def _run_broadcaster(self, lane: Lane) -> None:
        """Broadcasts committed batches while the lane signs and commits the next ones."""
        while True:
            records = await lane.outbox.get()
            while not lane.outbox.empty():
                records.extend(lane.outbox.get_nowait())
            lane.busy += 1
            try:
                await self.broadcast(lane, records)
            except Exception:
                # The records are stored: the tracker re-sends whatever did not go out.
                log.exception("lane %s: broadcast failed", lane.key.alias)
                for record in records:
                    record.unsent = True
            finally:
                lane.busy -= 1

    async def _send_batch(
        self, lane: Lane, batch: list[tuple[Request, asyncio.Future[tuple[TxRecord, bool]]]]
    ) -> None:
        """Sign and commit a batch, answer its callers, and queue it for broadcast.

        Callers are answered once their transaction is durable, not once it reached the node:
        from the commit on, the broadcaster, the tracker or a restart's recovery sends it."""
        requests = [request for request, _ in batch]
        max_fee, tip = self.config.fees.offer(self.base_fee)

        def sign(request: Request, nonce: int) -> Attempt:
            return self._sign(lane.key, request, nonce, max_fee, tip)

        try:
            results = await asyncio.to_thread(self.store.insert_batch, lane.address, requests, sign)
        except IdempotencyConflict:
            if len(batch) == 1:
                raise
            # One bad request must not fail its neighbours: send them one by one.
            for item in batch:
                try:
                    await self._send_batch(lane, [item])
                except IdempotencyConflict as error:
                    item[1].set_exception(error)
            return
        created = [record for record, is_new in results if is_new]
        for record in created:
            assert record.nonce is not None
            lane.open[record.nonce] = record
        if created:
            lane.outbox.put_nowait(created)
        for (record, is_new), (_, future) in zip(results, batch, strict=True):
            if is_new:
                self._notify(record)
            if not future.done():
                future.set_result((record.snapshot(), is_new))

    def _sign(
        self, key: SigningKey, request: Request, nonce: int, max_fee: int, tip: int
    ) -> Attempt:
        signed = key.sign_1559(
            Eip1559(
                chain_id=self.config.chain_id,
                nonce=nonce,
                max_priority_fee_per_gas=tip,
                max_fee_per_gas=max_fee,
                gas=request.gas_limit,
                to=request.to_address,
                value=request.value_wei,
                data=request.data,
            )
        )
        return Attempt(signed.tx_hash, signed.raw, max_fee, tip)

    # -- broadcasting ----------------------------------------------------------------------------

    async def broadcast(self, lane: Lane, records: Sequence[TxRecord]) -> None:
        """Send each record's latest attempt, one after the other in nonce order.

        Not as one JSON-RPC batch: nodes may run a batch's calls concurrently, and an automining
        node (Hardhat) refuses a nonce that arrives before its predecessor ("nonce too high").
        """
        if not records:
            return
        ordered = sorted(records, key=lambda record: record.nonce or 0)
        answers: list[Any] = []
        for record in ordered:
            try:
                answers.append(
                    await self.rpc.call("eth_sendRawTransaction", "0x" + record.latest.raw.hex())
                )
            except (RpcError, RpcUnavailable) as error:
                answers.append(error)
        self.broadcasted.set()
        now = time.monotonic()
        for record, answer in zip(ordered, answers, strict=True):
            record.sent_at = now
            record.unsent = False
            if not isinstance(answer, Exception) or (
                isinstance(answer, RpcError) and _HARMLESS.search(answer.message)
            ):
                continue
            fatal = isinstance(answer, RpcError) and _FATAL.search(answer.message)
            if fatal and record.caller != FILLER_CALLER:
                held = await self._held(record)
                if held is False:
                    await self._fill(lane, record, str(answer))
                    continue
                if held:
                    # Refused is this attempt (a fee bump), not the nonce: an earlier attempt
                    # the node holds can still be mined, and the tracker will see which was.
                    log.warning(
                        "node refused %s (nonce %s): %s; an earlier attempt is with the node",
                        record.latest.tx_hash,
                        record.nonce,
                        answer,
                    )
                    continue
            # Unreachable node, a fee too low, an answer we do not know, or a refusal whose
            # earlier attempts the node could not account for: the tracker retries (with a
            # higher fee if the node asked for one).
            record.unsent = True
            record.underpriced = isinstance(answer, RpcError) and bool(_FEE.search(answer.message))
            log.warning("broadcast of %s: %s", record.latest.tx_hash, answer)

    async def _held(self, record: TxRecord) -> bool | None:
        """Whether the node holds any attempt of the record, pending or mined; None when it
        could not say (an error is not evidence of absence)."""
        calls = [("eth_getTransactionByHash", [attempt.tx_hash]) for attempt in record.attempts]
        try:
            answers = await self.rpc.batch(calls)
        except (RpcError, RpcUnavailable):
            return None
        if any(isinstance(answer, dict) for answer in answers):
            return True
        if any(isinstance(answer, Exception) for answer in answers):
            return None
        return False

    async def _fill(self, lane: Lane, record: TxRecord, error: str) -> None:
        """Only for a nonce at which the node holds none of the record's attempts."""
        assert record.nonce is not None
        nonce = record.nonce
        log.error("node refused %s (nonce %d): %s; filling the nonce", record.tx_hash, nonce, error)
        filler = Request(
            caller=FILLER_CALLER,
            idempotency_key=f"filler:{lane.address}:{nonce}",
            fingerprint="filler",
            from_key=lane.key.alias,
            from_address=lane.address,
            to_address=lane.address,
            function="(nonce filler)",
            data=b"",
            value_wei=0,
            gas_limit=21_000,
        )
        max_fee, tip = self.config.fees.offer(self.base_fee)
        attempt = self._sign(lane.key, filler, nonce, max_fee, tip)
        filler_record = await asyncio.to_thread(
            self.store.fill_nonce, record.id, f"rejected by the node: {error}", filler, attempt
        )
        record.status = Status.FAILED
        record.error = f"rejected by the node: {error}"
        record.nonce = None
        lane.open[nonce] = filler_record
        self._notify(record)
        await self.broadcast(lane, [filler_record])

    # -- recovery --------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Pick up where the last run stopped: every open record re-broadcast byte for byte, and
        each account's nonce moved past anything sent with its key outside the signer."""
        block = await self.rpc.call("eth_getBlockByNumber", "latest", False)
        self.base_fee = int(block.get("baseFeePerGas") or "0x0", 16)
        self.head = int(block["number"], 16)
        records = await asyncio.to_thread(self.store.open_records)
        by_address: dict[str, list[TxRecord]] = {}
        for record in records:
            by_address.setdefault(record.from_address, []).append(record)
        keys = {key.address: key for key in self.keys.all()}
        for address in by_address:
            if address not in keys:
                found = next((self._key_for(r) for r in by_address[address]), None)
                if found is None:
                    raise RuntimeError(f"open transactions from {address}, whose key is not loaded")
                keys[address] = found
        addresses = sorted(keys)
        counts = await self.rpc.batch(
            [("eth_getTransactionCount", [address, "pending"]) for address in addresses]
        )
        for address, count in zip(addresses, counts, strict=True):
            if isinstance(count, Exception):
                raise count
            before, after = await asyncio.to_thread(
                self.store.ensure_account, address, int(count, 16)
            )
            if after != before:
                log.warning(
                    "account %s: nonce moved from %d to %d (used outside the signer)",
                    address,
                    before,
                    after,
                )
            lane = self._start_lane(keys[address], by_address.get(address, []))
            pending = [r for r in lane.open.values() if r.status is Status.PENDING]
            if pending:
                log.info(
                    "account %s: re-broadcasting %d pending transactions", address, len(pending)
                )
                await self.broadcast(lane, pending)

    def _key_for(self, record: TxRecord) -> SigningKey | None:
        try:
            key = self.keys.get(record.from_key)
        except LookupError:
            return None
        return key if key.address == record.from_address else None

    # -- watching --------------------------------------------------------------------------------

    def watch(self, caller: str, keys: Sequence[str]) -> Watcher:
        watcher = Watcher(caller=caller, keys=frozenset(keys) if keys else None)
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def _notify(self, record: TxRecord) -> None:
        snapshot: TxRecord | None = None
        for watcher in self._watchers:
            if watcher.caller != record.caller:
                continue
            if watcher.keys is not None and record.idempotency_key not in watcher.keys:
                continue
            snapshot = snapshot or record.snapshot()
            watcher.queue.put_nowait(snapshot)

    async def aclose(self) -> None:
        tasks = [task for lane in self.lanes.values() for task in lane.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def decode_reason(error: BaseException, errors: dict[bytes, tuple[str, list[str]]]) -> str:
    cause = error.__cause__ if isinstance(error, Refused) else error
    if isinstance(cause, RpcError):
        data = cause.revert_data()
        if data is not None:
            return decode_revert(data, errors)
        return cause.message
    return str(error)
