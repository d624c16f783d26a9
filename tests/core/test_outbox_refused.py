"""An outbox event the broker refuses for good (here: larger than its topic takes) is kept with
the reason and passed over; the events after it go out, and are not sent again and again."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from chargenet.core.bus.kafka import KafkaBus
from chargenet.core.db import Database, OutboxMessage
from chargenet.core.db.migrations import upgrade_to_head
from chargenet.core.db.outbox import OutboxRelay, add_to_outbox
from chargenet.core.envelope import Envelope

pytestmark = pytest.mark.kafka


def event(key: str, pad: int = 0) -> Envelope:
    data = {"pad": "x" * pad}
    return Envelope(type="chargenet.test.tick.v1", source="tests", subject=key, data=data)


def on_topic(bootstrap: str, topic: str, seconds: float = 5.0) -> list[str]:
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
        }
    )
    reader.subscribe([topic])
    keys: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = reader.poll(0.2)
        if message is not None and message.error() is None:
            keys.append((message.key() or b"").decode())
    reader.close()
    return keys


def test_an_event_the_broker_refuses_is_kept_and_passed_over(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    small = NewTopic(topic_prefix + "small", 1, 1, config={"max.message.bytes": "2000"})
    for created in admin.create_topics([small]).values():
        created.result()
    bus = KafkaBus(kafka_bootstrap, topic_prefix=topic_prefix, partitions=1)
    bus.ensure_topics(["small", "ok"])
    db = Database(f"sqlite:///{tmp_path}/outbox.db")
    upgrade_to_head(db)
    with db.session() as session:
        add_to_outbox(session, "small", event("big", pad=5000))
        for key in ("a", "b", "c"):
            add_to_outbox(session, "ok", event(key))
    relay = OutboxRelay(db, bus)
    try:
        for _ in range(3):  # the relay's next rounds find nothing left
            relay.relay_once()
        assert relay.pending() == 0
        with db.session() as session:
            refused = session.scalars(
                sa.select(OutboxMessage.refused).where(OutboxMessage.key == "big")
            ).one()
        assert refused is not None and "MSG_SIZE_TOO_LARGE" in refused
        # Sent with the refused one, then one at a time to tell which was refused: twice, in
        # order (a consumer's inbox drops the second); it was every round, for ever.
        assert on_topic(kafka_bootstrap, topic_prefix + "ok") == ["a", "b", "c"] * 2
    finally:
        bus.close()
        db.dispose()
