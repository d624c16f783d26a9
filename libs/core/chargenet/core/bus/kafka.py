"""The Kafka bus (confluent-kafka, i.e. librdkafka): production's implementation of ``EventBus``.

Producer: idempotent with ``acks=all``, so a retried send is neither written twice nor reordered
within a key. Consumer: auto-commit off; offsets are committed per partition only after the
handler returned for every event up to them, which is what makes delivery at least once.

Why librdkafka and not a pure-Python client: group heartbeats run on its own native threads, so a
process whose Python threads are starved (a busy 2-core machine, a slow handler) stays a member of
its group. With kafka-python 3.0 such members were evicted and, being alone in their group, consumed
nothing more (a gateway replica that executed no command; a wallet whose live view stopped).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Mapping, Sequence

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec
from confluent_kafka.cimpl import NewTopic

from chargenet.core.bus.base import (
    CONSUMED,
    DEAD_LETTER_REASON_CHARS,
    DEAD_LETTER_SUFFIX,
    MAX_BATCH,
    PUBLISHED,
    TYPE_HEADER,
    BatchHandler,
    EventBus,
    Handler,
    Subscription,
    deliver_batch,
    done_of_fetched,
    park,
)
from chargenet.core.envelope import Envelope
from chargenet.core.settings import CoreSettings, KafkaSecurity, fail

log = logging.getLogger(__name__)
#: librdkafka's own log lines (connection trouble, rebalances) go through Python logging here.
client_log = logging.getLogger("kafka")
#: Failure reports of sends are served every this many events (and by every flush).
_SERVE_REPORTS_EVERY = 64
#: Failed sends kept for ``flush`` to raise (each is also logged).
_KEPT_SEND_ERRORS = 100
#: How long a consumer waits for a first message before it checks whether it should stop.
_POLL_SECONDS = 0.2
#: At most this many already-fetched events are handled in one go.
_BATCH = MAX_BATCH
#: Offsets of handled events are committed at most this often (and whenever the consumer is
#: idle, loses partitions or closes): a commit per event multiplied the broker's work by the
#: number of groups reading a topic, for nothing - a handled event not yet committed is only
#: redelivered after a crash, and the inbox drops it.
_COMMIT_EVERY_SECONDS = 0.2
#: The topics this bus creates. Kafka deletes whole segments, so a record lives up to the topic's
#: retention plus a segment's span (by default 7 days each, 14 in all: the inbox's retention,
#: ``core.db.retention``, past which a re-read event - a group whose offsets expired, reading from
#: the earliest - would be applied again). Segments of a day keep records 8 days at most.
TOPIC_CONFIG = {"segment.ms": str(24 * 3600 * 1000)}
#: Errors with which the broker (or the client, before sending) refuses one record for good. Not
#: a timeout: after an outage the same record goes through.
_REFUSALS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.TOPIC_EXCEPTION,
    }
)
#: How long a dead letter may wait for the broker's acknowledgement before it is tried again.
_PARK_TIMEOUT_SECONDS = 10.0
#: What a ListOffsets asks of a partition to see that its leader serves it (the stubs leave the
#: constructor untyped).
_LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
#: On a parked record that was not an event: why it could not be read.
UNREADABLE_HEADER = "chargenet_unreadable"
#: On a parked event: the last error its handler raised.
HANDLER_ERROR_HEADER = "chargenet_handler_error"


def security_config(settings: CoreSettings) -> dict[str, str]:
    """The librdkafka properties for TLS and SASL from the settings (none for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol is KafkaSecurity.PLAINTEXT:
        return {}
    config = {"security.protocol": protocol.value}
    files = {
        "ssl.ca.location": settings.kafka_ssl_ca_file,
        "ssl.certificate.location": settings.kafka_ssl_cert_file,
        "ssl.key.location": settings.kafka_ssl_key_file,
    }
    config.update({name: str(path) for name, path in files.items() if path is not None})
    if protocol.sasl:
        # The settings' validator guarantees both for a SASL protocol.
        assert settings.kafka_sasl_username is not None
        assert settings.kafka_sasl_password is not None
        config.update(
            {
                "sasl.mechanism": settings.kafka_sasl_mechanism.value,
                "sasl.username": settings.kafka_sasl_username,
                "sasl.password": settings.kafka_sasl_password.get_secret_value(),
            }
        )
    return config


class KafkaBus(EventBus):
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic_prefix: str = "",
        partitions: int = 8,
        connect_timeout: float = 30.0,
        linger_ms: int = 2,
        security: Mapping[str, str] | None = None,
        debug: str = "",
    ):
        self.bootstrap_servers = bootstrap_servers
        #: TLS and SASL properties every client of this bus gets (``security_config``).
        self.security = dict(security or {})
        #: What every client of this bus gets besides its own settings: the security properties
        #: and, when asked for, librdkafka's debug contexts (logged through ``client_log``).
        self.client_config = {**self.security, **({"debug": debug} if debug else {})}
        self.topic_prefix = topic_prefix
        self.partitions = partitions
        # Failed sends are collected by the delivery callback (not by keeping every future) so
        # a long-running producer's memory stays flat; ``flush`` raises the first one.
        self._send_errors: list[Exception] = []
        self._errors_lock = threading.Lock()
        self._produced = 0
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "enable.idempotence": True,
                # Only failures come back to Python: a callback per acknowledged event cost the
                # gateway's event loop more than producing it.
                "delivery.report.only.error": True,
                "on_delivery": self._delivered,
                "acks": "all",
                "linger.ms": linger_ms,
                "client.id": "chargenet-producer",
                "logger": client_log,
                **self.client_config,
            }
        )
        # Fail at start-up, not at the first publish, when no broker answers.
        try:
            self._producer.list_topics(timeout=connect_timeout)
        except KafkaException as error:
            raise ConnectionError(f"no Kafka broker answers at {bootstrap_servers}") from error
        self._subscriptions: list[_KafkaSubscription] = []
        self._known_topics: set[str] = set()
        self._admin = AdminClient({"bootstrap.servers": bootstrap_servers, **self.security})

    @classmethod
    def connect(cls, settings: CoreSettings) -> KafkaBus:
        """Connect at start-up, or exit with a message naming the setting to fix."""
        try:
            return cls(
                settings.kafka_bootstrap_servers,
                topic_prefix=settings.kafka_topic_prefix,
                partitions=settings.kafka_partitions,
                connect_timeout=settings.kafka_connect_timeout_seconds,
                linger_ms=settings.kafka_linger_ms,
                security=security_config(settings),
                debug=settings.kafka_debug,
            )
        except ConnectionError:
            problem = f"no Kafka broker answers at {settings.kafka_bootstrap_servers}"
            if (protocol := settings.kafka_security_protocol) is not KafkaSecurity.PLAINTEXT:
                problem += (
                    f" over {protocol} (or it refused this client's certificate or credentials: "
                    "CHARGENET_KAFKA_SSL_*, CHARGENET_KAFKA_SASL_*)"
                )
            raise fail(f"CHARGENET_KAFKA_BOOTSTRAP_SERVERS: {problem}") from None

    def _name(self, topic: str) -> str:
        return self.topic_prefix + topic

    def publish(self, topic: str, envelope: Envelope) -> None:
        name = self._name(topic)
        if name not in self._known_topics:
            # Never let a send create a topic (the broker's auto-creation): its first sends
            # could be lost (``_wait_until_served``). Once per topic and process.
            self._ensure_named([name])
        self._produce(name, envelope)
        PUBLISHED(topic).inc()

    def _produce(self, full_name: str, envelope: Envelope) -> None:
        key, value = envelope.subject.encode(), envelope.to_bytes()
        headers: list[tuple[str, str | bytes | None]] = [(TYPE_HEADER, envelope.type.encode())]
        while True:
            try:
                self._producer.produce(full_name, value=value, key=key, headers=headers)
                break
            except BufferError:
                # The local queue is full: wait for the broker to acknowledge some of it.
                self._producer.poll(0.1)
        self._produced += 1
        if self._produced % _SERVE_REPORTS_EVERY == 0:
            self._producer.poll(0)  # serve the failure reports of earlier sends

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        log.error("a send to Kafka (%s) failed: %s", message.topic(), error)
        with self._errors_lock:
            if len(self._send_errors) < _KEPT_SEND_ERRORS:  # a broker outage fails thousands
                self._send_errors.append(KafkaException(error))

    def flush(self, timeout: float = 30.0) -> None:
        pending = self._producer.flush(timeout)
        with self._errors_lock:
            errors, self._send_errors = self._send_errors, []
        if errors:
            raise errors[0]
        if pending:
            raise TimeoutError(f"{pending} events not acknowledged by Kafka after {timeout}s")

    def refuses(self, error: Exception) -> bool:
        return isinstance(error, KafkaException) and error.args[0].code() in _REFUSALS

    def ensure_topics(self, topics: Sequence[str]) -> None:
        self._ensure_named([self._name(t) for t in topics])

    def _ensure_named(self, names: Sequence[str]) -> None:
        wanted = [name for name in names if name not in self._known_topics]
        if not wanted:
            return
        existing = self._admin.list_topics(timeout=30).topics
        new = [
            NewTopic(
                name, num_partitions=self.partitions, replication_factor=1, config=TOPIC_CONFIG
            )
            for name in wanted
            if name not in existing
        ]
        if new:
            for future in self._admin.create_topics(new, operation_timeout=30).values():
                try:
                    future.result()
                except KafkaException as error:
                    # Another replica may have created it first.
                    if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
            self._wait_until_served([t.topic for t in new])
        self._known_topics.update(wanted)

    def _wait_until_served(self, topics: list[str], timeout: float = 30.0) -> None:
        """Wait until the leader of every partition of new topics serves it.

        The metadata names a partition's leader before that broker has created the partition's
        log: a consumer that subscribes earlier is assigned nothing until its next metadata
        refresh, and a send that arrives earlier is refused (NOT_LEADER_OR_FOLLOWER). The
        refused send is then lost if a later batch to the partition, sent meanwhile, is accepted:
        librdkafka's idempotent producer counts the refused one as delivered by the later one's
        success ("implicitly acked", confluentinc/confluent-kafka-go#921), and no error comes
        back. Reproduced here: 1 to 4 events of a new topic lost in about 1 round of 150. A
        partition serves once its leader answers a ListOffsets for it.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = self._admin.list_topics(timeout=10).topics
            # A partition without a leader fails the ListOffsets too: no separate check.
            if all(n in described and described[n].error is None for n in topics):
                partitions = [TopicPartition(n, p) for n in topics for p in described[n].partitions]
                if partitions and self._all_served(partitions):
                    return
            time.sleep(0.1)
        raise TimeoutError(f"topics {topics} are not served by their leaders after {timeout}s")

    def _all_served(self, partitions: list[TopicPartition]) -> bool:
        answers = self._admin.list_offsets(
            {partition: _LATEST for partition in partitions}, request_timeout=10
        )
        try:
            for answer in answers.values():
                answer.result()
        except KafkaException:
            return False
        return True

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
        self.ensure_topics(topics)
        subscription = _KafkaSubscription(
            self,
            [self._name(t) for t in topics],
            group,
            handler,
            from_beginning,
            batch_handler,
            frozenset(types) if types is not None else None,
        )
        self._subscriptions.append(subscription)
        subscription.start()
        return subscription

    def dead_letter(self, topic: str, envelope: Envelope, reason: str) -> None:
        """Park a poison event with its handler's last error; returns once the broker has it
        (see ``base.park``)."""
        headers: list[tuple[str, str | bytes | None]] = [
            (TYPE_HEADER, envelope.type.encode()),
            (HANDLER_ERROR_HEADER, reason.encode()),
        ]
        self.park(topic, envelope.subject.encode(), envelope.to_bytes(), headers)

    def park(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, str | bytes | None]],
    ) -> None:
        """Send one record to a dead-letter topic and wait for the broker's acknowledgement;
        raises if it was refused or not acknowledged in time."""
        self._ensure_named([topic])
        # The producer reports failures only ("delivery.report.only.error"): none by the time
        # the queue is empty means the broker has it.
        refused: list[KafkaError | None] = []
        self._producer.produce(
            topic,
            value=value,
            key=key,
            headers=headers,
            on_delivery=lambda error, _message: refused.append(error),
        )
        if self._producer.flush(_PARK_TIMEOUT_SECONDS):
            raise TimeoutError(f"Kafka did not acknowledge a dead letter to {topic} in time")
        if refused and refused[0] is not None:
            raise KafkaException(refused[0])

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self.flush()


class _KafkaSubscription(Subscription):
    """One consumer on its own thread; every call on the consumer happens on that thread."""

    def __init__(
        self,
        bus: KafkaBus,
        topics: list[str],
        group: str,
        handler: Handler,
        from_beginning: bool,
        batch_handler: BatchHandler | None = None,
        types: frozenset[str] | None = None,
    ) -> None:
        self.bus = bus
        self.topics = topics
        self.group = group
        self.handler = handler
        self.batch_handler = batch_handler
        self.types = types
        self.assigned = threading.Event()
        self._stopped = threading.Event()
        self._commit_on_close = True
        #: Handled but not yet committed: (topic, partition) -> last handled offset.
        self._handled: dict[tuple[str, int], int] = {}
        self._committed_at = 0.0
        self._consumer = Consumer(
            {
                "bootstrap.servers": bus.bootstrap_servers,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                # Heartbeats come from librdkafka's threads; a generous session still rides out
                # a machine so loaded that the broker itself answers late.
                "session.timeout.ms": 30_000,
                "heartbeat.interval.ms": 3_000,
                # Notice new topics and partitions within seconds, not the default five minutes.
                "topic.metadata.refresh.interval.ms": 5_000,
                "client.id": f"chargenet-{group}",
                "logger": client_log,
                "on_commit": self._committed,
                **bus.client_config,
            }
        )
        self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        self._thread = threading.Thread(target=self._run, name=f"kafka-{group}", daemon=True)

    def _committed(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is not None:
            log.warning("commit for group %s failed (%s): redelivered later", self.group, error)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # An empty assignment (more members than partitions) is not "ready": whoever waits for
        # it would miss events published meanwhile.
        if partitions:
            self.assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned.clear()
        # What was handled goes to the next owner as committed, not as a redelivery.
        revoked = {(p.topic, p.partition) for p in partitions}
        done = {tp: last for tp, last in self._handled.items() if tp in revoked}
        for tp in done:
            del self._handled[tp]
        if done and (self._commit_on_close or not self._stopped.is_set()):
            self._commit(done, asynchronous=False)

    def start(self) -> None:
        self._thread.start()

    def wait_assigned(self, timeout: float = 60.0) -> bool:
        return self.assigned.wait(timeout)

    def _run(self) -> None:
        consumer = self._consumer
        try:
            while not self._stopped.is_set():
                # ``poll`` returns as soon as one message is there; ``consume(n, timeout)`` waits
                # for n messages or the whole timeout (measured: ~100 ms median, 200 ms worst per
                # hop with 0.2 s). What else is already fetched comes along without waiting.
                first = consumer.poll(_POLL_SECONDS)
                if first is None:
                    self._commit_handled()  # idle: nothing to gain by waiting
                    continue
                messages = [first, *consumer.consume(num_messages=_BATCH - 1, timeout=0)]
                if not self._consume(messages):
                    return
        finally:
            if self._commit_on_close:
                self._commit_handled(asynchronous=False)
            consumer.close()

    def _consume(self, messages: list[Message]) -> bool:
        """Handle a batch in order; commit what was handled. False when stopping."""
        valid: list[Message] = []
        for message in messages:
            error = message.error()
            if error is not None:
                log.warning("consumer %s: %s", self.group, error)
                continue
            valid.append(message)
        wanted: list[int] = []
        items: list[tuple[str, Envelope]] = []
        for position, message in enumerate(valid):
            if self._passed_over(message):
                continue
            try:
                envelope = Envelope.from_bytes(message.value() or b"")
            except ValueError as error:
                # Not an event at all (a tombstone, another tool's record): parked as it came,
                # so it neither stops this consumer nor hides the events behind it.
                if not self._park_unreadable(message, error):
                    return False
                continue
            if self.types is None or envelope.type in self.types:
                wanted.append(position)
                items.append((message.topic() or "", envelope))
        handled = deliver_batch(
            self.handler,
            self.batch_handler,
            items,
            dead_letter=self.bus.dead_letter,
            stopping=self._stopped.is_set,
        )
        # A simulated crash (close without commit) keeps what it handled uncommitted.
        if not (self._stopped.is_set() and not self._commit_on_close):
            for message in valid[: done_of_fetched(len(valid), wanted, handled)]:
                key = (message.topic() or "", message.partition() or 0)
                self._handled[key] = message.offset() or 0
        if time.monotonic() - self._committed_at >= _COMMIT_EVERY_SECONDS:
            self._commit_handled()
        return not self._stopped.is_set()

    def _park_unreadable(self, message: Message, error: ValueError) -> bool:
        topic = message.topic() or ""
        log.error(
            "consumer %s: %s[%s]@%s is not an event, dead-lettered: %s",
            self.group,
            topic,
            message.partition(),
            message.offset(),
            str(error)[:300],
        )
        headers = _headers(message)
        headers.append((UNREADABLE_HEADER, str(error)[:DEAD_LETTER_REASON_CHARS].encode()))
        name = topic + DEAD_LETTER_SUFFIX
        parked = park(
            lambda: self.bus.park(name, message.key(), message.value(), headers),
            what=f"{topic}@{message.offset()}",
            stopping=self._stopped.is_set,
            backoff=0.2,
        )
        if parked:
            CONSUMED(topic.removeprefix(self.bus.topic_prefix), "unreadable").inc()
        return parked

    def _passed_over(self, message: Message) -> bool:
        """An event of a type this subscription does not want, told by its header alone
        (events published before the header existed are parsed and checked instead)."""
        if self.types is None:
            return False
        for name, value in _headers(message):
            if name == TYPE_HEADER:
                text = value.decode() if isinstance(value, bytes) else value
                return text is not None and text not in self.types
        return False

    def _commit_handled(self, *, asynchronous: bool = True) -> None:
        if self._handled:
            done, self._handled = self._handled, {}
            self._commit(done, asynchronous=asynchronous)

    def _commit(self, done: dict[tuple[str, int], int], *, asynchronous: bool = True) -> None:
        self._committed_at = time.monotonic()
        offsets = [
            TopicPartition(topic, partition, last + 1) for (topic, partition), last in done.items()
        ]
        try:
            # Asynchronous: the next events are handled while the broker stores these offsets
            # (a synchronous commit cost a broker round trip per batch on the handling thread).
            # Still only offsets of handled events; one that fails to store (``_committed``)
            # means a redelivery, which the consumer's inbox drops.
            # Two calls, not one with the flag: the stubs type each mode by a Literal overload.
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:
            # A rebalance took a partition away; its new owner re-reads from the last commit.
            log.warning(
                "commit for group %s failed (%s); it will be redelivered", self.group, error
            )

    def close(self, *, commit: bool = True) -> None:
        self._commit_on_close = commit
        self._stopped.set()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout=30)


def _headers(message: Message) -> list[tuple[str, str | bytes | None]]:
    """A consumed message's headers (they come as a list; the stubs also allow a dict)."""
    sent = message.headers() or []
    pairs = sent.items() if isinstance(sent, dict) else sent
    return [(str(name), value) for name, value in pairs]
