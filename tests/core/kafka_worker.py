"""A consumer process for the crash test: applies events once into a shared database.

Run as ``python kafka_worker.py BOOTSTRAP PREFIX GROUP DB_URL``; it records every first
application in ``applied`` (in the same transaction as the inbox row) and runs until killed.
"""

from __future__ import annotations

import sys
import time

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chargenet.core.bus.kafka import KafkaBus
from chargenet.core.db import Database
from chargenet.core.db.inbox import apply_once
from chargenet.core.envelope import Envelope

APPLIED = sa.Table(
    "applied",
    sa.MetaData(),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(50), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
)


def main() -> None:
    bootstrap, prefix, group, url, topic = sys.argv[1:6]
    db = Database(url)
    bus = KafkaBus(bootstrap, topic_prefix=prefix)

    def apply(session: Session, envelope: Envelope) -> None:
        session.execute(APPLIED.insert().values(key=envelope.subject, seq=envelope.data["seq"]))

    def handle(envelope: Envelope) -> None:
        apply_once(db, "crash-suite", envelope, apply)

    subscription = bus.subscribe([topic], group, handle)
    subscription.wait_assigned()
    print("assigned", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
