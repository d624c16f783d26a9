"""Pick the bus from configuration; services never branch on it themselves."""

from __future__ import annotations

from chargenet.core.bus.base import EventBus
from chargenet.core.settings import BusKind, CoreSettings


def create_bus(settings: CoreSettings) -> EventBus:
    if settings.bus is BusKind.KAFKA:
        from chargenet.core.bus.kafka import KafkaBus

        return KafkaBus.connect(settings)
    from chargenet.core.bus.memory import InMemoryBus

    return InMemoryBus(partitions=settings.kafka_partitions)
