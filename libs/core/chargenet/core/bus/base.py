"""The bus interface every service codes against."""

from __future__ import annotations

import abc
import logging
import time
import zlib
from collections.abc import Callable, Collection, Sequence

import sqlalchemy.exc

from chargenet.core.envelope import Envelope
from chargenet.core.errors import DependencyUnavailable
from chargenet.core.metrics import Children, counter

Handler = Callable[[Envelope], None]
#: Takes the events a consumer fetched together, in order (so each key's order is kept).
BatchHandler = Callable[[Sequence[Envelope]], None]

log = logging.getLogger(__name__)

# Children: counted per event on every service's hot path.
PUBLISHED = Children(
    counter("chargenet_bus_published_events", "Events handed to the bus", ("topic",))
)
CONSUMED = Children(
    counter(
        "chargenet_bus_consumed_events",
        "Events delivered to handlers, by outcome",
        ("topic", "outcome"),
    )
)


#: The Kafka header naming an event's type (as in CloudEvents' Kafka binding), so a consumer
#: can pass over types it does not want without parsing them.
TYPE_HEADER = "ce_type"


def done_of_fetched(fetched: int, wanted: Sequence[int], handled: int) -> int:
    """How many of ``fetched`` events are done, when the handlers were given the ``wanted`` ones
    (their positions, ascending) and finished the first ``handled`` of those: the passed-over
    events before the first unfinished one are done too."""
    return fetched if handled >= len(wanted) else wanted[handled]


def partition_for(key: str, partitions: int) -> int:
    """Stable key -> partition mapping (the in-process bus; Kafka uses its own murmur2)."""
    return zlib.crc32(key.encode()) % partitions


class Subscription(abc.ABC):
    """A running consumer: a thread that polls, calls the handler, then commits."""

    @abc.abstractmethod
    def close(self, *, commit: bool = True) -> None:
        """Stop consuming. ``commit=False`` simulates a crash: uncommitted work is redelivered."""

    @abc.abstractmethod
    def wait_assigned(self, timeout: float = 30.0) -> bool:
        """Block until this member owns its partitions (useful at start-up and in tests)."""


class EventBus(abc.ABC):
    @abc.abstractmethod
    def publish(self, topic: str, envelope: Envelope) -> None:
        """Queue one event for ``topic`` keyed by ``envelope.subject``."""

    @abc.abstractmethod
    def flush(self, timeout: float = 30.0) -> None:
        """Block until every queued event is acknowledged by the bus; raises if one failed."""

    def refuses(self, error: Exception) -> bool:
        """Whether a failed publish or flush was the bus refusing that event for good (too
        large, not allowed on its topic), which sending again cannot change, unlike an outage."""
        return False

    @abc.abstractmethod
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
        """Start a consumer in ``group`` for ``topics`` that calls ``handler`` per event.

        With ``types``, only events of those types reach the handlers; the others are passed
        over (and committed), on Kafka without being parsed: a consumer that needs a few types
        of a busy topic (the gateway on ``sessions``, full of meter values) pays little for the
        rest.

        With ``batch_handler``, the events fetched together (up to ``MAX_BATCH``) go to it as
        one list instead, e.g. to apply them in one database transaction. If it raises, those
        events go to ``handler`` one by one, with the usual retries and dead letter: a poison
        event is dead-lettered alone and the others still apply. So ``batch_handler`` must
        change nothing when it raises (one transaction does that), and both must be idempotent.
        """

    def dead_letter(self, topic: str, envelope: Envelope, reason: str) -> None:
        """Park a poison event on its dead-letter topic; returns once the bus has it. ``reason``
        is the handler's last error, for whoever looks at the dead letter (a bus that carries
        no headers only logs it)."""
        self.publish(topic, envelope)
        self.flush()

    @abc.abstractmethod
    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create topics that do not exist yet (with the configured partition count)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release every producer and consumer."""


#: A handler that keeps failing on one event is retried this often, then the event goes to the
#: topic's dead-letter topic so one poison event cannot stall its partition for ever.
MAX_HANDLER_ATTEMPTS = 5
#: The longest pause between two tries of an event whose handler waits for a dependency.
MAX_TRANSIENT_WAIT_SECONDS = 5.0


def is_transient(error: BaseException) -> bool:
    """A failure of what the handler depends on, not of the event: a component that did not
    answer, or the database's connection or a lock conflict (``OperationalError``)."""
    return isinstance(
        error,
        DependencyUnavailable | sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError,
    )


DEAD_LETTER_SUFFIX = ".dlq"
#: The longest reason a dead letter carries (the error's start says what failed).
DEAD_LETTER_REASON_CHARS = 1000
#: The most events a batch handler is given at once.
MAX_BATCH = 500


def deliver(
    handler: Handler,
    envelope: Envelope,
    *,
    topic: str,
    dead_letter: Callable[[str, Envelope, str], None],
    stopping: Callable[[], bool],
    backoff: float = 0.2,
) -> bool:
    """Call the handler with retries; False if the consumer is stopping and the event is unfinished.

    Returns True once the event is handled or dead-lettered (so its offset may be committed).
    """
    attempt = waits = 0
    reason = ""
    while attempt < MAX_HANDLER_ATTEMPTS:
        try:
            handler(envelope)
            CONSUMED(topic, "handled").inc()
            return True
        except Exception as error:
            if stopping():
                log.warning("handler failed on %s %s while stopping", envelope.type, envelope.id)
                return False
            if is_transient(error):
                # A component the handler needs is down, not the event: wait for it however
                # long it takes (the partition waits too, in order) instead of dead-lettering
                # an event that is fine.
                waits += 1
                log.warning(
                    "handler on %s %s waits for a dependency (%s): %s",
                    envelope.type,
                    envelope.id,
                    type(error).__name__,
                    error,
                )
                time.sleep(min(backoff * waits, MAX_TRANSIENT_WAIT_SECONDS))
                continue
            attempt += 1
            reason = f"{type(error).__name__}: {error}"[:DEAD_LETTER_REASON_CHARS]
            log.exception(
                "handler failed on %s %s (attempt %d/%d)",
                envelope.type,
                envelope.id,
                attempt,
                MAX_HANDLER_ATTEMPTS,
            )
            time.sleep(backoff * attempt)
    parked = park(
        lambda: dead_letter(topic + DEAD_LETTER_SUFFIX, envelope, reason),
        what=f"{envelope.type} {envelope.id}",
        stopping=stopping,
        backoff=backoff,
    )
    if parked:
        CONSUMED(topic, "dead_lettered").inc()
    return parked


def park(
    send: Callable[[], None], *, what: str, stopping: Callable[[], bool], backoff: float
) -> bool:
    """Dead-letter something, trying until the bus has it; False if stopping first. Its offset is
    committed next, so a dead letter the broker refused (a missing ACL, a size limit) would lose
    the event: that is waited out like a dependency that is down."""
    waits = 0
    while True:
        try:
            send()
            return True
        except Exception as error:
            if stopping():
                return False
            waits += 1
            log.warning("dead-lettering %s failed, trying again: %s", what, error)
            time.sleep(min(backoff * waits, MAX_TRANSIENT_WAIT_SECONDS))


def deliver_batch(
    handler: Handler,
    batch_handler: BatchHandler | None,
    items: Sequence[tuple[str, Envelope]],
    *,
    dead_letter: Callable[[str, Envelope, str], None],
    stopping: Callable[[], bool],
    backoff: float = 0.2,
) -> int:
    """Deliver ``(topic, envelope)`` items fetched together, in order; returns how many leading
    items are done (handled or dead-lettered), so their offsets may be committed.

    The batch handler gets one try: a failure may be one poison event, and only handling the
    events one by one (``deliver``) can tell which, retry it alone and dead-letter it alone.
    """
    if batch_handler is not None and items:
        try:
            batch_handler([envelope for _, envelope in items])
        except Exception:
            log.exception("batch handler failed on %d events; handling them one by one", len(items))
        else:
            for topic, _ in items:
                CONSUMED(topic, "handled").inc()
            return len(items)
    done = 0
    for topic, envelope in items:
        if stopping() or not deliver(
            handler,
            envelope,
            topic=topic,
            dead_letter=dead_letter,
            stopping=stopping,
            backoff=backoff,
        ):
            break
        done += 1
    return done
