"""The consumer inbox: an event id applied once per consumer, whatever the bus redelivers."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chargenet.core.db.database import Database
from chargenet.core.db.tables import InboxMessage
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
            if session.get(InboxMessage, (consumer, envelope.id)) is not None:
                raise _AlreadyProcessed
            session.add(InboxMessage(consumer=consumer, event_id=envelope.id))
            try:
                session.flush()
            except IntegrityError as error:
                raise _AlreadyProcessed from error
            apply(session, envelope)
    except _AlreadyProcessed:
        return False
    return True
