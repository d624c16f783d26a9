"""The consumer inbox: an event id applied once per consumer, whatever the bus redelivers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chargenet.core.db.database import Database
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

    The inbox row is flushed before ``apply`` runs, so two redeliveries racing on two threads or
    processes collide on the primary key and only one of them commits its effects.
    """
    try:
        with db.session() as session:
            if _unseen(session, consumer, [envelope]) == []:
                raise _AlreadyProcessed
            try:
                _record(session, consumer, [envelope])
            except IntegrityError as error:
                raise _AlreadyProcessed from error
            apply(session, envelope)
    except _AlreadyProcessed:
        return False
    return True


#: Event ids per ``IN (...)`` look-up (far below every backend's limit on bound parameters).
_IDS_PER_QUERY = 500


def apply_batch_once(
    db: Database,
    consumer: str,
    envelopes: Sequence[Envelope],
    apply: Callable[[Session, list[Envelope]], None],
) -> list[Envelope]:
    """Apply the events not seen before in ONE transaction with their inbox rows; returns them.

    One look-up finds the ids already processed; the rest (each id once, in order) are recorded
    and handed to ``apply``. All or nothing: if ``apply`` raises, or a racing delivery on another
    thread or process recorded one of the ids first (the inbox's primary key refuses the second
    insert), nothing is applied and the error propagates - the bus then hands the events over
    one by one (``apply_once``), which sorts out the race and any poison event.
    """
    with db.session() as session:
        fresh = _unseen(session, consumer, envelopes)
        if fresh:
            _record(session, consumer, fresh)
            apply(session, fresh)
    return fresh


#: The inbox rows go in through the connection: an ORM insert (objects or bulk) of a few rows
#: cost about twice the CPU (measured on PostgreSQL), on every event every consumer applies.
_INSERT = sa.insert(cast(sa.Table, InboxMessage.__table__))


def _record(session: Session, consumer: str, envelopes: Sequence[Envelope]) -> None:
    """The inbox rows, inserted now (one statement, no ORM objects): a racing delivery of the
    same id fails here, on the primary key, before any effect."""
    now = utcnow()
    rows = [{"consumer": consumer, "event_id": e.id, "processed_at": now} for e in envelopes]
    session.connection().execute(_INSERT, rows)


def _unseen(session: Session, consumer: str, envelopes: Sequence[Envelope]) -> list[Envelope]:
    ids = list(dict.fromkeys(e.id for e in envelopes))
    seen: set[str] = set()
    for start in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[start : start + _IDS_PER_QUERY]
        seen.update(
            session.scalars(
                sa.select(InboxMessage.event_id).where(
                    InboxMessage.consumer == consumer, InboxMessage.event_id.in_(chunk)
                )
            )
        )
    fresh: list[Envelope] = []
    for envelope in envelopes:
        if envelope.id not in seen:
            seen.add(envelope.id)  # a duplicate within the batch applies once too
            fresh.append(envelope)
    return fresh
