"""The event catalogue keeps its own rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from chargenet.core.envelope import Envelope, make_envelope
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
