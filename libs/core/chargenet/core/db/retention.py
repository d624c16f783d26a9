"""Keeping the outbox and the inbox within their retention.

Every event a service publishes stays in its outbox, and every event a consumer applies leaves a
row in its inbox; without pruning both grow with every session, forever. A published outbox row
is only history once the bus has it. An inbox row must outlive the bus's own retention: a
redelivered event older than its inbox row would be applied a second time, so the default (14
days) is twice Kafka's default topic retention (7 days). Nothing unpublished is ever pruned.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa

from chargenet.core.db.database import Database
from chargenet.core.db.tables import InboxMessage, OutboxMessage, utcnow
from chargenet.core.settings import CoreSettings

log = logging.getLogger(__name__)

_OUTBOX = cast(sa.Table, OutboxMessage.__table__)
_INBOX = cast(sa.Table, InboxMessage.__table__)
#: Rows deleted per transaction: short locks, however much a first run finds.
BATCH = 1_000


@dataclass(frozen=True)
class Retention:
    outbox: timedelta
    inbox: timedelta

    @classmethod
    def of(cls, settings: CoreSettings) -> Retention:
        return cls(
            outbox=timedelta(hours=settings.outbox_retention_hours),
            inbox=timedelta(hours=settings.inbox_retention_hours),
        )


def prune(
    db: Database, retention: Retention, *, now: datetime | None = None, batch: int = BATCH
) -> tuple[int, int]:
    """Delete published outbox rows and inbox rows past their retention; returns how many of
    each, a batch per transaction."""
    now = now or utcnow()
    old_outbox = (
        sa.select(_OUTBOX.c.seq)
        .where(_OUTBOX.c.published_at < now - retention.outbox)
        .order_by(_OUTBOX.c.published_at)
        .limit(batch)
    )
    outbox = _delete_all(db, sa.delete(_OUTBOX).where(_OUTBOX.c.seq.in_(old_outbox)))
    old_inbox = (
        sa.select(_INBOX.c.consumer, _INBOX.c.event_id)
        .where(_INBOX.c.processed_at < now - retention.inbox)
        .order_by(_INBOX.c.processed_at)
        .limit(batch)
    )
    key = sa.tuple_(_INBOX.c.consumer, _INBOX.c.event_id)
    inbox = _delete_all(db, sa.delete(_INBOX).where(key.in_(old_inbox)))
    if outbox or inbox:
        log.info("pruned %d outbox and %d inbox rows past their retention", outbox, inbox)
    return outbox, inbox


def _delete_all(db: Database, statement: sa.Delete) -> int:
    total = 0
    while True:
        with db.session() as session:
            result = cast(sa.CursorResult[Any], session.execute(statement))
            deleted = result.rowcount or 0
        total += deleted
        if deleted == 0:
            return total
