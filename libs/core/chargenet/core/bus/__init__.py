"""The event bus: one interface, an in-process implementation and a Kafka one.

Semantics both keep, and the shared test suite checks:
- ``publish(topic, envelope)`` routes by ``envelope.subject`` (the key): one key, one partition,
  order kept.
- ``subscribe(topics, group, handler)``: members of one group share the partitions; every group sees
  every event. Delivery is at least once: an offset is committed only after the handler returned, so
  a consumer that dies redelivers what it had not finished. Handlers must be idempotent, which the
  inbox (``chargenet.core.db.inbox``) makes easy.
- ``subscribe(..., batch_handler=...)`` hands the events fetched together to one call (one
  database transaction for them: ``chargenet.core.db.inbox.apply_batch_once``); if it fails they
  go to the per-event handler one by one, so a poison event is retried and dead-lettered alone.
"""

from chargenet.core.bus.base import BatchHandler, EventBus, Handler, Subscription
from chargenet.core.bus.factory import create_bus

__all__ = ["BatchHandler", "EventBus", "Handler", "Subscription", "create_bus"]
