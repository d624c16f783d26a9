"""Keeping the outbox and the inbox within their retention.

Every event a service publishes stays in its outbox, and every event a consumer applies leaves a
row in its inbox; without pruning both grow with every session, forever. A published outbox row
is only history once the bus has it. An inbox row must outlive the bus's own retention: a
redelivered event older than its inbox row would be applied a second time, so the default (14
days) is well past the longest a record lives on the topics the bus creates (Kafka's default 7
days' retention plus a day's segment, ``bus.kafka.TOPIC_CONFIG``). Nothing unpublished is ever
pruned.
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


@dataclass(frozen=True)
class Pruned:
    outbox: int
    inbox: int
    #: Stopped at ``max_batches`` with rows still past their retention.
    more: bool = False


def prune(
    db: Database,
    retention: Retention,
    *,
    now: datetime | None = None,
    batch: int = BATCH,
    max_batches: int | None = None,
) -> Pruned:
    """Delete published outbox rows and inbox rows past their retention, a batch per
    transaction, at most ``max_batches`` per table (a caller with other work comes back)."""
    now = now or utcnow()
    old_outbox = (
        sa.select(_OUTBOX.c.seq)
        .where(_OUTBOX.c.published_at < now - retention.outbox)
        .order_by(_OUTBOX.c.published_at)
        .limit(batch)
    )
    outbox, more_outbox = _delete(
        db, sa.delete(_OUTBOX).where(_OUTBOX.c.seq.in_(old_outbox)), max_batches
    )
    old_inbox = (
        sa.select(_INBOX.c.consumer, _INBOX.c.event_id)
        .where(_INBOX.c.processed_at < now - retention.inbox)
        .order_by(_INBOX.c.processed_at)
        .limit(batch)
    )
    key = sa.tuple_(_INBOX.c.consumer, _INBOX.c.event_id)
    inbox, more_inbox = _delete(db, sa.delete(_INBOX).where(key.in_(old_inbox)), max_batches)
    if outbox or inbox:
        log.info("pruned %d outbox and %d inbox rows past their retention", outbox, inbox)
    return Pruned(outbox, inbox, more_outbox or more_inbox)


def _delete(db: Database, statement: sa.Delete, max_batches: int | None) -> tuple[int, bool]:
    """Run the batch delete until it deletes nothing (or ``max_batches`` times); returns the
    rows deleted and whether it stopped with some left."""
    total, batches = 0, 0
    while max_batches is None or batches < max_batches:
        with db.session() as session:
            result = cast(sa.CursorResult[Any], session.execute(statement))
            deleted = result.rowcount or 0
        total, batches = total + deleted, batches + 1
        if deleted == 0:
            return total, False
    return total, True
