"""The bus interface every service codes against."""

from __future__ import annotations

import abc
import logging
import time
import zlib
from collections.abc import Callable, Sequence

from chargenet.core.envelope import Envelope
from chargenet.core.metrics import counter

Handler = Callable[[Envelope], None]

log = logging.getLogger(__name__)

PUBLISHED = counter("chargenet_bus_published_events", "Events handed to the bus", ("topic",))
CONSUMED = counter(
    "chargenet_bus_consumed_events",
    "Events delivered to handlers, by outcome",
    ("topic", "outcome"),
)


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

    @abc.abstractmethod
    def subscribe(
        self,
        topics: Sequence[str],
        group: str,
        handler: Handler,
        *,
        from_beginning: bool = True,
    ) -> Subscription:
        """Start a consumer in ``group`` for ``topics`` that calls ``handler`` per event."""

    @abc.abstractmethod
    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create topics that do not exist yet (with the configured partition count)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release every producer and consumer."""


#: A handler that keeps failing on one event is retried this often, then the event goes to the
#: topic's dead-letter topic so one poison event cannot stall its partition for ever.
MAX_HANDLER_ATTEMPTS = 5
DEAD_LETTER_SUFFIX = ".dlq"


def deliver(
    handler: Handler,
    envelope: Envelope,
    *,
    topic: str,
    dead_letter: Callable[[str, Envelope], None],
    stopping: Callable[[], bool],
    backoff: float = 0.2,
) -> bool:
    """Call the handler with retries; False if the consumer is stopping and the event is unfinished.

    Returns True once the event is handled or dead-lettered (so its offset may be committed).
    """
    for attempt in range(1, MAX_HANDLER_ATTEMPTS + 1):
        try:
            handler(envelope)
            CONSUMED.labels(topic, "handled").inc()
            return True
        except Exception:
            log.exception(
                "handler failed on %s %s (attempt %d/%d)",
                envelope.type,
                envelope.id,
                attempt,
                MAX_HANDLER_ATTEMPTS,
            )
            if stopping():
                return False
            time.sleep(backoff * attempt)
    dead_letter(topic + DEAD_LETTER_SUFFIX, envelope)
    CONSUMED.labels(topic, "dead_lettered").inc()
    return True
