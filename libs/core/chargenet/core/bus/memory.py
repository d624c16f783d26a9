"""The in-process bus: Kafka's semantics (partitions, consumer groups, committed offsets) in memory.

It serves the embedded default and fast unit tests, and it runs the same test suite as the Kafka
bus, so a service that works on one works on the other. Events live for the life of the process.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from chargenet.core.bus.base import (
    MAX_BATCH,
    PUBLISHED,
    BatchHandler,
    EventBus,
    Handler,
    Subscription,
    deliver_batch,
    done_of_fetched,
    partition_for,
)
from chargenet.core.envelope import Envelope

Partition = tuple[str, int]


@dataclass
class _Group:
    name: str
    members: list[_MemorySubscription] = field(default_factory=list)
    committed: dict[Partition, int] = field(default_factory=dict)
    in_flight: dict[Partition, _MemorySubscription] = field(default_factory=dict)


class InMemoryBus(EventBus):
    def __init__(self, partitions: int = 8) -> None:
        self.partitions = partitions
        self._logs: dict[str, list[list[Envelope]]] = {}
        self._groups: dict[str, _Group] = {}
        # One condition guards all state; the embedded default's rates are far below its limit.
        self._cond = threading.Condition()
        self._member_ids = itertools.count(1)
        self._subscriptions: list[_MemorySubscription] = []

    # -- producing -------------------------------------------------------------------------
    def _log(self, topic: str) -> list[list[Envelope]]:
        if topic not in self._logs:
            self._logs[topic] = [[] for _ in range(self.partitions)]
        return self._logs[topic]

    def publish(self, topic: str, envelope: Envelope) -> None:
        with self._cond:
            self._log(topic)[partition_for(envelope.subject, self.partitions)].append(envelope)
            self._cond.notify_all()
        PUBLISHED(topic).inc()

    def flush(self, timeout: float = 30.0) -> None:
        """Nothing to wait for: ``publish`` appends synchronously."""

    def ensure_topics(self, topics: Sequence[str]) -> None:
        with self._cond:
            for topic in topics:
                self._log(topic)

    def events(self, topic: str) -> list[Envelope]:
        """Every event ever published to ``topic`` (for tests and the demo's report)."""
        with self._cond:
            return [e for partition in self._log(topic) for e in partition]

    # -- consuming -------------------------------------------------------------------------
    def subscribe(
        self,
        topics: Sequence[str],
        group: str,
        handler: Handler,
        *,
        from_beginning: bool = True,
        batch_handler: BatchHandler | None = None,
        types: Collection[str] | None = None,
    ) -> Subscription:
        with self._cond:
            state = self._groups.setdefault(group, _Group(group))
            for topic in topics:
                log = self._log(topic)
                for index, partition in enumerate(log):
                    # A group's first member decides where a partition starts, like Kafka's
                    # auto.offset.reset; later members inherit the committed offset.
                    start = 0 if from_beginning else len(partition)
                    state.committed.setdefault((topic, index), start)
            member = _MemorySubscription(
                self,
                state,
                list(topics),
                handler,
                next(self._member_ids),
                batch_handler,
                frozenset(types) if types is not None else None,
            )
            state.members.append(member)
            self._rebalance(state)
            self._subscriptions.append(member)
        member.start()
        return member

    def _rebalance(self, group: _Group) -> None:
        """Spread the group's partitions over its members (caller holds the lock)."""
        partitions = sorted(group.committed)
        for member in group.members:
            member.assigned = []
            member.positions = {}
        for index, partition in enumerate(partitions):
            members = [m for m in group.members if partition[0] in m.topics]
            if not members:
                continue
            owner = members[index % len(members)]
            owner.assigned.append(partition)
            owner.positions[partition] = group.committed[partition]
        self._cond.notify_all()

    def _leave(self, member: _MemorySubscription) -> None:
        with self._cond:
            if member in member.group.members:
                member.group.members.remove(member)
                self._rebalance(member.group)

    def close(self) -> None:
        for member in list(self._subscriptions):
            member.close()


class _MemorySubscription(Subscription):
    def __init__(
        self,
        bus: InMemoryBus,
        group: _Group,
        topics: list[str],
        handler: Handler,
        member_id: int,
        batch_handler: BatchHandler | None = None,
        types: frozenset[str] | None = None,
    ) -> None:
        self.bus = bus
        self.group = group
        self.topics = topics
        self.handler = handler
        self.batch_handler = batch_handler
        self.types = types
        #: Events taken at once: what is waiting (up to the batch size) for a batch handler.
        self.limit = MAX_BATCH if batch_handler is not None else 1
        self.assigned: list[Partition] = []
        self.positions: dict[Partition, int] = {}
        self._stopped = threading.Event()
        self._commit_on_close = True
        self._thread = threading.Thread(
            target=self._run, name=f"bus-{group.name}-{member_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def wait_assigned(self, timeout: float = 30.0) -> bool:
        return True  # assignment is synchronous in memory

    def _take(self) -> list[tuple[Partition, int, Envelope]]:
        """Waiting events of assigned partitions not held by another member (lock held), in
        offset order per partition; their partitions are held until they are done."""
        taken: list[tuple[Partition, int, Envelope]] = []
        for partition in self.assigned:
            holder = self.group.in_flight.get(partition)
            if holder is not None and holder is not self:
                continue  # the previous owner is finishing an event; wait to keep key order
            # The previous owner may have committed its last event after the rebalance.
            offset = max(self.positions[partition], self.group.committed[partition])
            log = self.bus._logs[partition[0]][partition[1]]
            end = min(len(log), offset + self.limit - len(taken))
            if offset < end:
                self.group.in_flight[partition] = self
                taken.extend((partition, o, log[o]) for o in range(offset, end))
            if len(taken) >= self.limit:
                break
        return taken

    def _run(self) -> None:
        cond = self.bus._cond
        while not self._stopped.is_set():
            with cond:
                taken = self._take()
                if not taken:
                    cond.wait(timeout=0.1)
                    continue
            wanted = [
                position
                for position, (_p, _o, envelope) in enumerate(taken)
                if self.types is None or envelope.type in self.types
            ]
            handled = deliver_batch(
                self.handler,
                self.batch_handler,
                [(taken[i][0][0], taken[i][2]) for i in wanted],
                dead_letter=self.bus.dead_letter,
                stopping=self._stopped.is_set,
            )
            done = done_of_fetched(len(taken), wanted, handled)
            with cond:
                for partition, _, _ in taken:
                    if self.group.in_flight.get(partition) is self:
                        del self.group.in_flight[partition]
                crashed = self._stopped.is_set() and not self._commit_on_close
                for partition, offset, _ in taken[:done]:
                    if not crashed and partition in self.positions:
                        self.positions[partition] = offset + 1
                        self.group.committed[partition] = offset + 1
                cond.notify_all()

    def close(self, *, commit: bool = True) -> None:
        self._commit_on_close = commit
        self._stopped.set()
        # As a Kafka consumer does: finish (and commit) what it holds, then leave the group.
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
        self.bus._leave(self)
