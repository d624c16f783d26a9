"""Dead letters on Kafka: a record that is not an event is parked and the consumer goes on; a
poison event is parked with its handler's error, and its offset is committed only once the broker
has its dead letter; topics keep records well inside the inbox's retention."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from confluent_kafka.cimpl import NewTopic

from chargenet.core.bus.kafka import HANDLER_ERROR_HEADER, UNREADABLE_HEADER, KafkaBus
from chargenet.core.envelope import Envelope

pytestmark = pytest.mark.kafka


def event(seq: int, pad: int = 0) -> Envelope:
    data = {"seq": seq, "pad": "x" * pad}
    return Envelope(type="chargenet.test.tick.v1", source="tests", subject="k", data=data)


def eventually(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def records(
    bootstrap: str, topic: str, seconds: float = 15
) -> list[tuple[bytes | None, dict[str, bytes]]]:
    settings = {"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader"}
    reader = Consumer({**settings, "auto.offset.reset": "earliest"})
    reader.subscribe([topic])
    found: list[tuple[bytes | None, dict[str, bytes]]] = []
    deadline = time.monotonic() + seconds
    while not found and time.monotonic() < deadline:
        message = reader.poll(0.5)
        if message is not None and message.error() is None:
            found.append((message.value(), dict(message.headers() or [])))
    reader.close()
    return found


def test_a_record_that_is_no_event_is_parked_and_the_events_behind_it_handled(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    bus = KafkaBus(kafka_bootstrap, topic_prefix=topic_prefix, partitions=1)
    bus.ensure_topics(["t"])
    foreign = Producer({"bootstrap.servers": kafka_bootstrap})
    foreign.produce(topic_prefix + "t", key=b"k", value=b"not an event")  # another tool's record
    foreign.flush(10)
    bus.publish("t", event(1))
    bus.flush()
    seen: list[int] = []
    consumer = bus.subscribe(["t"], "g", lambda e: seen.append(e.data["seq"]))
    try:
        assert consumer.wait_assigned()
        assert eventually(lambda: seen == [1]), f"the event behind the record: {seen}"
    finally:
        bus.close()
    [(value, headers)] = records(kafka_bootstrap, topic_prefix + "t.dlq")
    assert value == b"not an event" and UNREADABLE_HEADER in headers


def test_a_poison_event_is_parked_with_the_error_its_handler_raised(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    bus = KafkaBus(kafka_bootstrap, topic_prefix=topic_prefix, partitions=1)
    bus.ensure_topics(["t", "t.dlq"])

    def poisoned(envelope: Envelope) -> None:
        raise ValueError(f"tariff of {envelope.subject} has no price")

    bus.publish("t", event(7))
    bus.flush()
    consumer = bus.subscribe(["t"], "g", poisoned)
    try:
        assert consumer.wait_assigned()
        [(value, headers)] = records(kafka_bootstrap, topic_prefix + "t.dlq", seconds=30)
    finally:
        bus.close()
    assert value is not None and Envelope.from_bytes(value).data["seq"] == 7
    assert headers[HANDLER_ERROR_HEADER] == b"ValueError: tariff of k has no price"


def test_a_poison_event_is_not_committed_while_the_broker_refuses_its_dead_letter(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """The dead-letter topic takes no record this large (as a missing write ACL would refuse
    every one): the event must stay uncommitted, to be dead-lettered once the broker takes it."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    small = NewTopic(topic_prefix + "t.dlq", 1, 1, config={"max.message.bytes": "2000"})
    for created in admin.create_topics([small]).values():
        created.result()
    bus = KafkaBus(kafka_bootstrap, topic_prefix=topic_prefix, partitions=1)
    bus.ensure_topics(["t"])
    attempts: list[str] = []

    def poisoned(envelope: Envelope) -> None:
        attempts.append(envelope.id)
        raise RuntimeError("poison")

    bus.publish("t", event(0, pad=5000))
    bus.flush()
    consumer = bus.subscribe(["t"], "g", poisoned)
    assert consumer.wait_assigned()
    assert eventually(lambda: len(attempts) >= 5)
    time.sleep(2)  # the dead letter refused meanwhile, and tried again
    consumer.close()
    bus.close()
    group = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "g"})
    [position] = group.committed([TopicPartition(topic_prefix + "t", 0)], timeout=10)
    group.close()
    assert position.offset < 1, "committed although its dead letter never reached the broker"


def test_the_topics_the_bus_creates_keep_records_well_inside_the_inboxs_retention(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Kafka deletes whole segments: a record lives up to its retention plus a segment's span
    (7 + 7 days by default), as long as the inbox keeps an applied event's id (14 days). A day's
    segments leave a week's margin; a broker whose retention is longer needs a longer inbox."""
    bus = KafkaBus(kafka_bootstrap, topic_prefix=topic_prefix, partitions=1)
    bus.ensure_topics(["t"])
    bus.close()
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_prefix + "t")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    [described] = admin.describe_configs([resource]).values()
    config = {name: entry.value for name, entry in described.result().items()}
    assert int(config["segment.ms"]) <= 24 * 3600 * 1000
