"""Hand the gateway's events to the bus from the event loop, without waiting for the broker.

The bus only enqueues here: librdkafka's own threads batch and send, and acknowledgements arrive
through its delivery callbacks (a refused send is logged and counted by the bus). Publishing inline
used to be a hand-over to a publisher thread, but that thread cost more than the work it took
off the loop: each hand-over made the loop wait for the GIL (up to the 5 ms switch interval) on
its next socket write, and the gateway with Kafka ran at a fraction of its in-process rate.
Order is the loop's order, so events of one charge point and of one session keep theirs.
"""

from __future__ import annotations

import logging

from chargenet.core.bus import EventBus
from chargenet.core.envelope import EventData, make_envelope
from chargenet.gateway.metrics import PUBLISH_FAILURES

log = logging.getLogger(__name__)


class EventPublisher:
    def __init__(self, bus: EventBus, source: str) -> None:
        self._bus = bus
        self._source = source

    def publish(self, topic: str, data: EventData, subject: str) -> None:
        """Queue one event on the bus; a refusal is logged, never raised into a handler."""
        try:
            self._bus.publish(topic, make_envelope(data, subject=subject, source=self._source))
        except Exception:
            PUBLISH_FAILURES.inc()
            log.exception("publishing %s for %s failed", data.event_type, subject)

    def close(self, timeout: float = 10.0) -> None:
        """Wait until the bus acknowledged everything published (shutdown)."""
        self._bus.flush(timeout)
