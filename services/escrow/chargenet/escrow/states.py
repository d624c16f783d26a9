"""The session state machine: which state may follow which.

REQUESTED waits for its open batch; OPENING has its open transaction in flight; OPEN is final on
chain; STARTING waits for the charge point; CHARGING follows meter values; STOPPING waits for the
charge point to report its stop; STOPPED waits for its settle batch; SETTLING has its settlement in
flight. CANCELLING has the cancel (or expiry refund) in flight.

Deviation from the starting design: REJECTED is a final state for a session whose escrow never
opened (tariff hash mismatch, an open the chain refused); nothing was locked, so "refunded" would
be untrue. FAILED needs an operator, but it is not the end of the money: the sweeper refunds a
FAILED session's escrow once its expiry passed (-> REFUNDED).
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    REQUESTED = "REQUESTED"
    OPENING = "OPENING"
    OPEN = "OPEN"
    STARTING = "STARTING"
    CHARGING = "CHARGING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    SETTLING = "SETTLING"
    SETTLED = "SETTLED"
    CANCELLING = "CANCELLING"
    REFUNDED = "REFUNDED"
    REJECTED = "REJECTED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in FINAL


FINAL = frozenset({State.SETTLED, State.REFUNDED, State.REJECTED, State.FAILED})
#: States a session passes through (not final).
LIVE = frozenset(State) - FINAL
#: States in which the maximum is (or may be) locked on chain.
LOCKED = frozenset(
    {
        State.OPEN,
        State.STARTING,
        State.CHARGING,
        State.STOPPING,
        State.STOPPED,
        State.SETTLING,
        State.CANCELLING,
    }
)
#: States whose escrow the sweeper refunds once it expired, if it is still open on chain: a
#: FAILED session, or a CANCELLING one whose cancel never came back.
SWEPT_FOR_REFUND = frozenset({State.CANCELLING, State.FAILED})

ALLOWED: dict[State, frozenset[State]] = {
    State.REQUESTED: frozenset({State.OPENING, State.REJECTED}),
    # Back to REQUESTED: the sessions of a failed open batch are retried one by one.
    State.OPENING: frozenset({State.OPEN, State.REJECTED, State.REQUESTED}),
    State.OPEN: frozenset({State.STARTING, State.CANCELLING}),
    State.STARTING: frozenset({State.CHARGING, State.CANCELLING}),
    # CHARGING -> STOPPED directly: the charge point reported its stop unasked, or was lost.
    # -> CANCELLING: the session ended having delivered nothing that can be priced.
    State.CHARGING: frozenset({State.STOPPING, State.STOPPED, State.CANCELLING}),
    State.STOPPING: frozenset({State.STOPPED, State.CANCELLING}),
    State.STOPPED: frozenset({State.SETTLING}),
    # Back to STOPPED: a failed settle batch is retried session by session.
    State.SETTLING: frozenset({State.SETTLED, State.STOPPED, State.FAILED}),
    State.CANCELLING: frozenset({State.REFUNDED, State.FAILED}),
    State.FAILED: frozenset({State.REFUNDED}),
    State.SETTLED: frozenset(),
    State.REFUNDED: frozenset(),
    State.REJECTED: frozenset(),
}


class InvalidTransition(RuntimeError):
    def __init__(self, session_id: str, current: State, target: State) -> None:
        super().__init__(f"session {session_id}: no transition {current} -> {target}")
        self.current = current
        self.target = target


def check(session_id: str, current: State, target: State) -> None:
    if target not in ALLOWED[current]:
        raise InvalidTransition(session_id, current, target)
