"""The Kafka bus (kafka-python): production's implementation of ``EventBus``.

Producer: ``acks=all`` and one request in flight per connection, so a retried send can not
reorder events of one key. Consumer: auto-commit off; offsets are committed per partition only
after the handler returned for every event up to them, which is what makes delivery at least once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from chargenet.core.bus.base import PUBLISHED, EventBus, Handler, Subscription, deliver
from chargenet.core.envelope import Envelope
from chargenet.core.settings import CoreSettings, fail

log = logging.getLogger(__name__)


class KafkaBus(EventBus):
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic_prefix: str = "",
        partitions: int = 8,
        connect_timeout: float = 30.0,
    ):
        self.bootstrap_servers = bootstrap_servers
        self.topic_prefix = topic_prefix
        self.partitions = partitions
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers,
            # Idempotence keeps a retried batch from being written twice or out of order.
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            bootstrap_timeout_ms=int(connect_timeout * 1000),
            client_id="chargenet-producer",
        )
        # Failed sends are collected by callback (not by keeping every future) so a long-running
        # producer's memory stays flat; ``flush`` raises the first one.
        self._send_errors: list[Exception] = []
        self._errors_lock = threading.Lock()
        self._subscriptions: list[_KafkaSubscription] = []
        self._known_topics: set[str] = set()

    @classmethod
    def connect(cls, settings: CoreSettings) -> KafkaBus:
        """Connect at start-up, or exit with a message naming the setting to fix."""
        try:
            return cls(
                settings.kafka_bootstrap_servers,
                topic_prefix=settings.kafka_topic_prefix,
                partitions=settings.kafka_partitions,
                connect_timeout=settings.kafka_connect_timeout_seconds,
            )
        except (KafkaTimeoutError, KafkaError):
            raise fail(
                "CHARGENET_KAFKA_BOOTSTRAP_SERVERS: no Kafka broker answers at "
                f"{settings.kafka_bootstrap_servers}"
            ) from None

    def _name(self, topic: str) -> str:
        return self.topic_prefix + topic

    def publish(self, topic: str, envelope: Envelope) -> None:
        future = self._producer.send(
            self._name(topic), key=envelope.subject.encode(), value=envelope.to_bytes()
        )
        future.add_errback(self._record_error)
        PUBLISHED.labels(topic).inc()

    def _record_error(self, error: Exception) -> None:
        log.error("a send to Kafka failed: %s", error)
        with self._errors_lock:
            self._send_errors.append(error)

    def flush(self, timeout: float = 30.0) -> None:
        self._producer.flush(timeout=timeout)
        with self._errors_lock:
            errors, self._send_errors = self._send_errors, []
        if errors:
            raise errors[0]

    def ensure_topics(self, topics: Sequence[str]) -> None:
        wanted = [self._name(t) for t in topics if self._name(t) not in self._known_topics]
        if not wanted:
            return
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        try:
            existing = set(admin.list_topics())
            new = [
                NewTopic(name, num_partitions=self.partitions, replication_factor=1)
                for name in wanted
                if name not in existing
            ]
            if new:
                # Another replica may have created it first.
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics(new)
                self._wait_for_leaders(admin, [t.name for t in new])
        finally:
            admin.close()
        self._known_topics.update(wanted)

    @staticmethod
    def _wait_for_leaders(
        admin: KafkaAdminClient, topics: list[str], timeout: float = 30.0
    ) -> None:
        """Wait until every partition of new topics has a leader.

        A consumer that subscribes before then sees no partitions and, with default settings,
        would not look again for minutes.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = admin.describe_topics(topics)
            if all(
                topic.get("error_code", 0) == 0
                and topic.get("partitions")
                and all(p.get("leader_id", -1) >= 0 for p in topic["partitions"])
                for topic in described
            ):
                return
            time.sleep(0.1)
        raise KafkaTimeoutError(f"topics {topics} have no leaders after {timeout}s")

    def subscribe(
        self,
        topics: Sequence[str],
        group: str,
        handler: Handler,
        *,
        from_beginning: bool = True,
    ) -> Subscription:
        self.ensure_topics(topics)
        subscription = _KafkaSubscription(
            self, [self._name(t) for t in topics], group, handler, from_beginning
        )
        self._subscriptions.append(subscription)
        subscription.start()
        return subscription

    def dead_letter(self, topic: str, envelope: Envelope) -> None:
        self._producer.send(topic, key=envelope.subject.encode(), value=envelope.to_bytes())

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        try:
            self.flush()
        finally:
            self._producer.close()


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, subscription: _KafkaSubscription) -> None:
        self.subscription = subscription

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.subscription.assigned.clear()

    def on_partitions_assigned(self, assigned: Any) -> None:
        # An empty assignment (metadata not there yet, or more members than partitions) is not
        # "ready": whoever waits for it would miss events published meanwhile.
        if assigned:
            self.subscription.assigned.set()


class _KafkaSubscription(Subscription):
    def __init__(
        self,
        bus: KafkaBus,
        topics: list[str],
        group: str,
        handler: Handler,
        from_beginning: bool,
    ) -> None:
        self.bus = bus
        self.topics = topics
        self.group = group
        self.handler = handler
        self.assigned = threading.Event()
        self._stopped = threading.Event()
        self._commit_on_close = True
        self._consumer = KafkaConsumer(
            bootstrap_servers=bus.bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            max_poll_records=500,
            # Generous: on a starved 2-core machine a shorter session made the coordinator evict
            # live members (missed heartbeats), and a group that keeps rebalancing consumes nothing.
            session_timeout_ms=30_000,
            heartbeat_interval_ms=3_000,
            # Notice new topics and partitions within seconds, not the default five minutes.
            metadata_max_age_ms=5_000,
            client_id=f"chargenet-{group}",
        )
        # Fetch the topics' metadata before joining: a member that joins without it is assigned
        # nothing until its next metadata refresh, seconds later.
        for topic in topics:
            self._consumer.partitions_for_topic(topic)
        self._consumer.subscribe(topics, listener=_Assigned(self))
        self._thread = threading.Thread(target=self._run, name=f"kafka-{group}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_assigned(self, timeout: float = 60.0) -> bool:
        return self.assigned.wait(timeout)

    def _run(self) -> None:
        consumer = self._consumer
        while not self._stopped.is_set():
            try:
                batches = consumer.poll(timeout_ms=200)
            except KafkaError:
                log.exception("poll failed for group %s; retrying", self.group)
                continue
            for partition, records in batches.items():
                if not self._consume(partition, records):
                    return

    def _consume(self, partition: TopicPartition, records: list[Any]) -> bool:
        """Handle one partition's batch in order; commit after it. False when stopping."""
        done_up_to: int | None = None
        for record in records:
            envelope = Envelope.from_bytes(record.value)
            handled = deliver(
                self.handler,
                envelope,
                topic=partition.topic,
                dead_letter=self.bus.dead_letter,
                stopping=self._stopped.is_set,
            )
            if not handled or (self._stopped.is_set() and not self._commit_on_close):
                break
            done_up_to = record.offset
            if self._stopped.is_set():
                break
        if done_up_to is not None:
            self._commit(partition, done_up_to + 1)
        return not self._stopped.is_set()

    def _commit(self, partition: TopicPartition, offset: int) -> None:
        try:
            self._consumer.commit({partition: OffsetAndMetadata(offset, "", -1)})
        except KafkaError:
            # A rebalance took the partition away; its new owner re-reads from the last commit.
            log.warning("commit of %s@%d failed; it will be redelivered", partition, offset)

    def close(self, *, commit: bool = True) -> None:
        self._commit_on_close = commit
        self._stopped.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
        self._consumer.close(autocommit=False)
