"""The sweeper reads and locks only the sessions it has to act on, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chargenet.core.db import Database
from chargenet.escrow.app import migrate
from chargenet.escrow.states import State
from chargenet.escrow.worker import due_for_sweep
from tests.escrow.harness import session_row

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
MARGIN = timedelta(minutes=10)  # escrow_expiry_margin_seconds
SILENCE = timedelta(minutes=15)  # escrow_session_timeout_seconds
FAR = NOW + timedelta(hours=2)  # an expiry far away


def test_only_sessions_the_sweeper_acts_on_are_read(database: Database) -> None:
    migrate(database)
    minute = timedelta(minutes=1)
    rows = {
        # due: opened, the start never sent
        "open": session_row("open", State.OPEN, expiry=FAR),
        # due: the charge point did not start in time
        "late start": session_row(
            "late start", State.STARTING, expiry=FAR, start_deadline=NOW - minute
        ),
        # due: nothing from the charge point for longer than the silence
        "silent": session_row(
            "silent", State.CHARGING, expiry=FAR, last_activity_at=NOW - SILENCE - minute
        ),
        "silent stopping": session_row(
            "silent stopping", State.STOPPING, expiry=FAR, last_activity_at=NOW - SILENCE - minute
        ),
        # due: the escrow's expiry within the margin
        "near expiry": session_row(
            "near expiry", State.CHARGING, expiry=NOW + MARGIN - minute, last_activity_at=NOW
        ),
        # not due
        "starting": session_row(
            "starting", State.STARTING, expiry=FAR, start_deadline=NOW + minute
        ),
        "charging": session_row(
            "charging", State.CHARGING, expiry=FAR, last_activity_at=NOW - SILENCE + minute
        ),
        "settled": session_row(
            "settled", State.SETTLED, expiry=NOW - minute, last_activity_at=NOW - SILENCE * 2
        ),
        "requested": session_row("requested", State.REQUESTED, expiry=NOW - minute),
    }
    with database.session() as session:
        session.add_all(rows.values())
    with database.session() as session:
        due = {row.session_id for row in session.scalars(due_for_sweep(NOW, MARGIN, SILENCE))}
    assert due == {"open", "late start", "silent", "silent stopping", "near expiry"}
