"""Tables every service database has: the outbox and the inbox.

Every service declares its own tables on its own ``DeclarativeBase``; these two live on
``CoreBase`` and are created by the core migration that each service's chain of migrations starts
from.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class CoreBase(DeclarativeBase):
    pass


class OutboxMessage(CoreBase):
    """An event written in the same transaction as the state change it reports."""

    __tablename__ = "outbox"

    # Monotonic, so the relay publishes in commit order within one key.
    seq: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    topic: Mapped[str] = mapped_column(sa.String(200))
    key: Mapped[str] = mapped_column(sa.String(200))
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
    #: Why the bus refused this event for good (see ``OutboxRelay``); it then counts as
    #: published, so that the events after it go out, and stays here for an operator for the
    #: outbox's retention.
    refused: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


class InboxMessage(CoreBase):
    """An event a consumer has applied; its primary key makes redelivery a no-op."""

    __tablename__ = "inbox"

    consumer: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
