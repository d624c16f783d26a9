"""Publish in the background: the WebSocket loop hands events over and never waits for the bus.

One thread drains one FIFO queue, so events keep the order the loop produced them in (per charge
point, and per session key). Building the envelope happens here too, off the loop. If the bus is
slow the queue grows (visible as ``chargenet_gateway_publish_queue_events``) instead of the charge
points waiting.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from chargenet.core.bus import EventBus
from chargenet.core.envelope import EventData, make_envelope
from chargenet.gateway.metrics import PUBLISH_FAILURES, PUBLISH_QUEUE

log = logging.getLogger(__name__)

_Item = tuple[str, EventData, str] | None
_WARN_DEPTH = 10_000
#: Hand-over is asynchronous (Kafka acknowledges later); confirming every so often surfaces
#: failures in the log and lets the bus drop what it tracks per send.
_FLUSH_EVERY_EVENTS = 1_000
_FLUSH_EVERY_SECONDS = 1.0


class BackgroundPublisher:
    def __init__(self, bus: EventBus, source: str) -> None:
        self._bus = bus
        self._source = source
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._pending = 0
        self._done = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="gateway-publisher", daemon=True)
        self._thread.start()

    def publish(self, topic: str, data: EventData, subject: str) -> None:
        """Queue one event (never blocks)."""
        with self._done:
            self._pending += 1
        self._queue.put((topic, data, subject))

    def _run(self) -> None:
        warned = False
        unconfirmed = 0
        last_flush = time.monotonic()
        while True:
            if unconfirmed and (
                self._queue.empty()
                or unconfirmed >= _FLUSH_EVERY_EVENTS
                or time.monotonic() - last_flush > _FLUSH_EVERY_SECONDS
            ):
                self._confirm()
                unconfirmed, last_flush = 0, time.monotonic()
            item = self._queue.get()
            if item is None:
                return
            topic, data, subject = item
            depth = self._queue.qsize()
            PUBLISH_QUEUE.set(depth)
            if depth > _WARN_DEPTH and not warned:
                log.warning("the bus is behind: %d events queued", depth)
            warned = depth > _WARN_DEPTH
            try:
                self._bus.publish(topic, make_envelope(data, subject=subject, source=self._source))
                unconfirmed += 1
            except Exception:
                PUBLISH_FAILURES.inc()
                log.exception("publishing %s for %s failed", data.event_type, subject)
            with self._done:
                self._pending -= 1
                if not self._pending:
                    self._done.notify_all()

    def _confirm(self) -> None:
        try:
            self._bus.flush()
        except Exception:
            PUBLISH_FAILURES.inc()
            log.exception("the bus did not confirm events it was handed")

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event was handed to the bus (tests, shutdown)."""
        with self._done:
            return self._done.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)
        self._bus.flush(timeout)
