"""Persistence: engines, sessions, the transactional outbox and the consumer inbox.

PostgreSQL in production, SQLite in the embedded default; the same code for both.
"""

from chargenet.core.db.database import Database
from chargenet.core.db.tables import CoreBase, InboxMessage, OutboxMessage

__all__ = ["CoreBase", "Database", "InboxMessage", "OutboxMessage"]
