"""The event catalogue keeps its own rules."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime

from chargenet.core.envelope import Envelope, make_envelope, new_event_id
from chargenet.core.events import ALL_EVENTS, EVENT_TYPES, MeterReading

TYPE_PATTERN = re.compile(r"^chargenet\.[a-z_]+\.[a-z_]+\.v[0-9]+$")


def test_every_type_is_named_versioned_and_unique() -> None:
    assert len(EVENT_TYPES) == len(ALL_EVENTS)
    for cls in ALL_EVENTS:
        assert TYPE_PATTERN.match(cls.event_type), cls.event_type
        assert "__doc__" in vars(cls) and cls.__doc__, f"{cls.__name__} is undocumented"


def test_an_envelope_round_trips_with_its_key() -> None:
    data = MeterReading(
        session_id="s-1",
        charge_point_id="CP-1",
        transaction_id="7",
        energy_wh=1234,
        measured_at=datetime(2026, 11, 29, tzinfo=UTC),
        signed_data="OCMF|{}|{}",
    )
    envelope = make_envelope(data, subject="s-1", source="gateway")
    again = Envelope.from_bytes(envelope.to_bytes())
    assert again == envelope
    assert again.key == "s-1"
    assert again.payload(MeterReading) == data


def test_event_ids_are_unique_random_uuids_also_across_a_fork() -> None:
    ids = {new_event_id() for _ in range(5_000)}  # many pools of 256
    assert len(ids) == 5_000
    for text in list(ids)[:500]:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text
    new_event_id()  # the parent's pool now holds ids a careless child would repeat
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(write, "\n".join(new_event_id() for _ in range(300)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        from_child = set(pipe.read().split("\n"))
    os.waitpid(child, 0)
    from_parent = {new_event_id() for _ in range(300)}
    assert len(from_child) == 300 and not from_child & from_parent
