"""No energy flows without a lock: the id tokens that open escrow sessions stand behind.

The table is fed from the ``sessions`` topic (every replica reads all of it in its own consumer
group): ``escrow_opened`` grants a token at one charge point, ``started`` (from whichever replica
saw the transaction start) binds the OCPP transaction id, and a closing event withdraws the grant.
Bus threads write and the event loop reads, so one lock guards it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from chargenet.core.envelope import Envelope
from chargenet.gateway.events import SESSION_CLOSING_TYPES, EscrowOpened, SessionStarted


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    CONCURRENT = "concurrent"
    ELSEWHERE = "elsewhere"


@dataclass(slots=True)
class Grant:
    session_id: str
    charge_point_id: str
    connector_id: int | None
    id_token: str
    expires_at: datetime | None
    transaction_id: str | None = None
    #: The latest register reading seen (a 2.0.1 transaction may end without one).
    last_energy_wh: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    grant: Grant | None = None


#: Closed transactions remembered, newest kept: a charge point may repeat a transaction message
#: whose answer it missed, long after its session closed (the topic's replay refills it).
CLOSED_LIMIT = 100_000

#: The ``sessions`` events the table is built from; the topic's meter values (most of it) are
#: passed over by the bus unparsed.
APPLIED_TYPES = frozenset(
    {EscrowOpened.event_type, SessionStarted.event_type, *SESSION_CLOSING_TYPES}
)


class AuthorizationTable:
    def __init__(self, serves: Callable[[str], bool] = lambda _cp: True) -> None:
        self._serves = serves
        self._lock = threading.Lock()
        self._sessions: dict[str, Grant] = {}
        self._by_token: dict[str, list[Grant]] = {}
        self._by_transaction: dict[tuple[str, str], Grant] = {}
        self._closed: dict[tuple[str, str], None] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def apply(self, envelope: Envelope) -> None:
        """Consume one ``sessions`` event (bus handler; idempotent)."""
        if envelope.type == EscrowOpened.event_type:
            opened = EscrowOpened.model_validate(envelope.data)
            expires = opened.expires_at
            if expires is not None and expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            if self._serves(opened.charge_point_id):
                self.grant(
                    Grant(
                        opened.session_id,
                        opened.charge_point_id,
                        opened.connector_id,
                        opened.id_token,
                        expires,
                    )
                )
        elif envelope.type == SessionStarted.event_type:
            started = SessionStarted.model_validate(envelope.data)
            self.bind(started.session_id, started.transaction_id, started.meter_start_wh)
        elif envelope.type in SESSION_CLOSING_TYPES:
            session_id = envelope.data.get("session_id")
            if isinstance(session_id, str):
                self.withdraw(session_id)

    def grant(self, grant: Grant) -> None:
        with self._lock:
            if grant.session_id in self._sessions:
                return
            self._sessions[grant.session_id] = grant
            self._by_token.setdefault(grant.id_token, []).append(grant)

    def bind(self, session_id: str, transaction_id: str, energy_wh: int | None = None) -> None:
        with self._lock:
            grant = self._sessions.get(session_id)
            if grant is not None:
                grant.transaction_id = transaction_id
                if grant.last_energy_wh is None:
                    grant.last_energy_wh = energy_wh
                self._by_transaction[(grant.charge_point_id, transaction_id)] = grant

    def withdraw(self, session_id: str) -> None:
        with self._lock:
            grant = self._sessions.pop(session_id, None)
            if grant is None:
                return
            grants = self._by_token.get(grant.id_token, [])
            if grant in grants:
                grants.remove(grant)
            if not grants:
                self._by_token.pop(grant.id_token, None)
            if grant.transaction_id is not None:
                key = (grant.charge_point_id, grant.transaction_id)
                self._by_transaction.pop(key, None)
                self._closed[key] = None
                if len(self._closed) > CLOSED_LIMIT:
                    del self._closed[next(iter(self._closed))]

    def decide(
        self,
        charge_point_id: str,
        id_token: str,
        *,
        transaction_id: str | None = None,
        connector_id: int | None = None,
    ) -> Decision:
        """May ``id_token`` draw energy at this charge point (for this transaction)?"""
        now = datetime.now(UTC)
        with self._lock:
            grants = list(self._by_token.get(id_token, ()))
        here = [g for g in grants if g.charge_point_id == charge_point_id]
        if not here:
            return Decision(Verdict.ELSEWHERE if grants else Verdict.UNKNOWN)
        if connector_id:
            # The lock was taken for one connector: another one of the same charge point is not it.
            here = [g for g in here if g.connector_id in (None, connector_id)]
            if not here:
                return Decision(Verdict.ELSEWHERE)
        live = [g for g in here if g.expires_at is None or g.expires_at > now]
        if not live:
            return Decision(Verdict.EXPIRED, here[0])
        free = [g for g in live if g.transaction_id in (None, transaction_id)]
        if not free:
            return Decision(Verdict.CONCURRENT, live[0])
        return Decision(Verdict.ACCEPTED, free[0])

    def by_transaction(self, charge_point_id: str, transaction_id: str) -> Grant | None:
        with self._lock:
            return self._by_transaction.get((charge_point_id, transaction_id))

    def closed(self, charge_point_id: str, transaction_id: str) -> bool:
        """Whether the transaction's session was withdrawn (stopped, settled, given up)."""
        with self._lock:
            return (charge_point_id, transaction_id) in self._closed
