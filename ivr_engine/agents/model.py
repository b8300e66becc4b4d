"""Agent states, the transition table, and the plain values the stores hand out.

Transition table (S = ``set_state``, R = ``reserve``/``release``, C = ``confirm``,
E = reservation expiry); a blank cell is refused with ``InvalidTransition``::

    from \\ to     logged_out  available  reserved  ringing  on_call  wrap_up  paused
    logged_out        .           S          .         .        .        .       S
    available         S           .          R         .        .        .       S
    reserved          .          R,E         .         C        .        .       .
    ringing           .          R,E         .         .        C        .       S
    on_call           .           R          R         .        .        R       .
    wrap_up           S           S          .         .        .        .       S
    paused            S           S          .         .        .        .       .

* ``set_state`` only enters logged_out, available and paused; the other states carry a call
  id and are entered through ``reserve``/``confirm``/``release``. Setting the current state
  again is a no-op. ringing → paused is "ring, no answer": the reservation is dropped.
* A multi-session agent (``max_concurrent`` > 1) that is on_call with a free slot can hold one
  pending reservation without changing state; confirming it adds the interaction. If its
  last interaction ends first, it goes on_call → reserved (no wrap-up: the next call waits).
* A reservation expires (E) while reserved (``ttl_s`` of ``reserve``) and, when ``confirm``
  was given a ``ring_ttl_s``, while ringing: a safety net for a give-back that never comes
  (the engine died, a reply was lost). Once on_call nothing expires.
* ``idle_since`` is when the agent last became available after work, a pause or a login. A
  reservation that is released unanswered or expires keeps it, so the agent keeps its place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RESERVED = "reserved"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


class ChangeCause(StrEnum):
    """Why an agent changed; also the operation that may take a transition."""

    REGISTERED = "registered"
    SET_STATE = "set_state"
    RESERVE = "reserve"
    CONFIRM = "confirm"
    RELEASE = "release"
    EXPIRY = "expiry"


_S = AgentState
_C = ChangeCause
TRANSITIONS: Mapping[tuple[AgentState, AgentState], frozenset[ChangeCause]] = {
    (_S.LOGGED_OUT, _S.AVAILABLE): frozenset({_C.SET_STATE}),
    (_S.LOGGED_OUT, _S.PAUSED): frozenset({_C.SET_STATE}),
    (_S.AVAILABLE, _S.LOGGED_OUT): frozenset({_C.SET_STATE}),
    (_S.AVAILABLE, _S.PAUSED): frozenset({_C.SET_STATE}),
    (_S.AVAILABLE, _S.RESERVED): frozenset({_C.RESERVE}),
    (_S.RESERVED, _S.AVAILABLE): frozenset({_C.RELEASE, _C.EXPIRY}),
    (_S.RESERVED, _S.RINGING): frozenset({_C.CONFIRM}),
    (_S.RINGING, _S.ON_CALL): frozenset({_C.CONFIRM}),
    (_S.RINGING, _S.AVAILABLE): frozenset({_C.RELEASE, _C.EXPIRY}),
    (_S.RINGING, _S.PAUSED): frozenset({_C.SET_STATE}),
    (_S.ON_CALL, _S.WRAP_UP): frozenset({_C.RELEASE}),
    (_S.ON_CALL, _S.AVAILABLE): frozenset({_C.RELEASE}),
    (_S.ON_CALL, _S.RESERVED): frozenset({_C.RELEASE}),
    (_S.WRAP_UP, _S.AVAILABLE): frozenset({_C.SET_STATE}),
    (_S.WRAP_UP, _S.PAUSED): frozenset({_C.SET_STATE}),
    (_S.WRAP_UP, _S.LOGGED_OUT): frozenset({_C.SET_STATE}),
    (_S.PAUSED, _S.AVAILABLE): frozenset({_C.SET_STATE}),
    (_S.PAUSED, _S.LOGGED_OUT): frozenset({_C.SET_STATE}),
}

SET_STATE_TARGETS: frozenset[AgentState] = frozenset(
    target for (_, target), causes in TRANSITIONS.items() if _C.SET_STATE in causes
)

SET_STATE_HINT = "reserved/ringing/on_call/wrap_up are entered through reserve, confirm, release"


def set_state_sources(target: AgentState) -> frozenset[AgentState]:
    """The states from which ``set_state(target)`` is allowed (besides ``target`` itself)."""
    return frozenset(
        source
        for (source, to), causes in TRANSITIONS.items()
        if to == target and _C.SET_STATE in causes
    )


@dataclass(frozen=True, slots=True)
class Reservation:
    call_id: str
    expires_at: datetime | None  # ringing: the ring expiry if any; None once connected


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    """One agent as the routing policy, the desktop and the load view see it."""

    agent_id: str
    state: AgentState
    since: datetime  # when the agent entered ``state``
    idle_since: datetime | None  # see the module docstring; None until first available
    interactions: tuple[str, ...]  # call ids connected to this agent, sorted
    max_concurrent: int
    reservation: Reservation | None = None

    @property
    def interaction_count(self) -> int:
        return len(self.interactions)


@dataclass(frozen=True, slots=True)
class AgentChange:
    """One entry of the change feed: the agent after the change, and what it was before."""

    cause: ChangeCause
    at: datetime
    previous: AgentState | None  # None for REGISTERED
    agent: AgentSnapshot
    call_id: str | None = None


def to_timestamp(moment: datetime) -> float:
    """Epoch seconds; a naive datetime is taken to be UTC."""
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).timestamp()


def from_timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
