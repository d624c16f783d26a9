"""The consumer inbox: an event id applied once per consumer, whatever the bus redelivers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chargenet.core.db.database import Database, insert_new
from chargenet.core.db.tables import InboxMessage, utcnow
from chargenet.core.envelope import Envelope


class _AlreadyProcessed(Exception):
    pass


def apply_once(
    db: Database,
    consumer: str,
    envelope: Envelope,
    apply: Callable[[Session, Envelope], None],
) -> bool:
    """Run ``apply`` and record the event id in one transaction; False if it was seen before.

    The inbox row is inserted before ``apply`` runs, so of two deliveries racing on two threads
    or processes only one applies its effects: the other waits on the row (PostgreSQL; SQLite
    has one writer at a time) and is passed over once the first commits.
    """
    try:
        with db.session() as session:
            if not _claim(session, consumer, [envelope]):
                raise _AlreadyProcessed
            apply(session, envelope)
    except _AlreadyProcessed:
        return False
    return True


def apply_batch_once(
    db: Database,
    consumer: str,
    envelopes: Sequence[Envelope],
    apply: Callable[[Session, list[Envelope]], None],
) -> list[Envelope]:
    """Apply the events not seen before in ONE transaction with their inbox rows; returns them.

    One statement records the ids not processed before and names them; those events (each id
    once, in order) are handed to ``apply``. All or nothing: if ``apply`` raises, nothing is
    applied and the error propagates - the bus then hands the events over one by one
    (``apply_once``), which sorts out any poison event.
    """
    with db.session() as session:
        fresh = _claim(session, consumer, envelopes)
        if fresh:
            apply(session, fresh)
    return fresh


_INBOX = cast(sa.Table, InboxMessage.__table__)
#: The inbox rows go in through the connection: an ORM insert (objects or bulk) of a few rows
#: cost about twice the CPU (measured on PostgreSQL), on every event every consumer applies.
#: An id already there is passed over, and only the ids inserted come back: one round trip
#: instead of a look-up and an insert.
_CLAIM = {
    dialect: insert.returning(_INBOX.c.event_id) for dialect, insert in insert_new(_INBOX).items()
}


def _claim(session: Session, consumer: str, envelopes: Sequence[Envelope]) -> list[Envelope]:
    """Record the events' ids not recorded before; returns those events, in order, each once.

    A delivery of the same id racing on another thread or process is passed over here once
    that one commits (PostgreSQL waits for it; SQLite has one writer at a time), so its effects
    are applied once.
    """
    now = utcnow()
    unique = list({e.id: e for e in envelopes}.values())  # a repeat in the batch is one event
    rows = [{"consumer": consumer, "event_id": e.id, "processed_at": now} for e in unique]
    connection = session.connection()
    statement = _CLAIM[connection.dialect.name]
    claimed = set(connection.execute(statement, rows).scalars())
    return [e for e in unique if e.id in claimed]
