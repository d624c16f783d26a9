"""A send the broker refuses is not lost silently: ``flush`` raises it (the bus reports only
failed deliveries back to Python, so this is the path that must work)."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from chargenet.core.bus.kafka import KafkaBus
from chargenet.core.envelope import Envelope

pytestmark = pytest.mark.kafka


def test_a_refused_send_is_raised_by_flush(kafka_bootstrap: str) -> None:
    bus = KafkaBus(kafka_bootstrap, topic_prefix=f"refused{uuid.uuid4().hex[:8]}.")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    small = NewTopic(bus.topic_prefix + "small", 1, 1, config={"max.message.bytes": "2000"})
    for created in admin.create_topics([small]).values():
        created.result()
    try:
        bus.publish("small", Envelope(type="t", source="test", subject="k", data={"x": "y" * 5000}))
        with pytest.raises(KafkaException, match="MSG_SIZE_TOO_LARGE"):
            bus.flush(10)
        bus.flush(10)  # reported once, then gone: the producer's memory stays flat
    finally:
        bus.close()
        for deleted in admin.delete_topics([small.topic]).values():
            deleted.result()
