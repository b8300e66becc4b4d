"""The state machine over one mutable agent record (used by the in-process store).

``redis_lua.py`` implements the same steps in Lua, function by function; the contract tests
run one suite against both. Times are epoch seconds (floats), as stored in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ivr_engine.agents.errors import InvalidTransition, ReservationLost
from ivr_engine.agents.model import (
    SET_STATE_HINT,
    SET_STATE_TARGETS,
    AgentChange,
    AgentSnapshot,
    AgentState,
    ChangeCause,
    Reservation,
    from_timestamp,
    set_state_sources,
)

S = AgentState


@dataclass(slots=True)
class AgentRecord:
    agent_id: str
    state: AgentState
    since: float
    max_concurrent: int
    idle_since: float | None = None
    interactions: set[str] = field(default_factory=set)
    res_call: str | None = None
    res_expires: float | None = None  # None: no reservation, or one that does not expire

    def snapshot(self) -> AgentSnapshot:
        reservation = None
        if self.res_call is not None:
            expires = None if self.res_expires is None else from_timestamp(self.res_expires)
            reservation = Reservation(self.res_call, expires)
        return AgentSnapshot(
            agent_id=self.agent_id,
            state=self.state,
            since=from_timestamp(self.since),
            idle_since=None if self.idle_since is None else from_timestamp(self.idle_since),
            interactions=tuple(sorted(self.interactions)),
            max_concurrent=self.max_concurrent,
            reservation=reservation,
        )


def _change(
    rec: AgentRecord, cause: ChangeCause, at: float, previous: S | None, call_id: str | None
) -> AgentChange:
    return AgentChange(cause, from_timestamp(at), previous, rec.snapshot(), call_id)


def _enter(rec: AgentRecord, state: S, at: float) -> None:
    if state != rec.state:
        rec.state, rec.since = state, at


def expire_due(rec: AgentRecord, now: float) -> AgentChange | None:
    """Drop a reservation whose expiry has passed (reserved or ringing → available, keeps
    idle_since)."""
    if rec.res_call is None or rec.res_expires is None or rec.res_expires > now:
        return None
    previous, call_id, at = rec.state, rec.res_call, rec.res_expires
    rec.res_call = rec.res_expires = None
    if rec.state in (S.RESERVED, S.RINGING):
        _enter(rec, S.AVAILABLE, at)
    return _change(rec, ChangeCause.EXPIRY, at, previous, call_id)


def set_state(rec: AgentRecord, target: S, now: float) -> AgentChange | None:
    if target == rec.state:
        return None
    if target not in SET_STATE_TARGETS:
        raise InvalidTransition(rec.agent_id, rec.state, target, SET_STATE_HINT)
    if rec.state not in set_state_sources(target):
        raise InvalidTransition(rec.agent_id, rec.state, target)
    previous, call_id = rec.state, rec.res_call
    rec.res_call = rec.res_expires = None  # only ringing → paused holds one here
    _enter(rec, target, now)
    if target == S.AVAILABLE:
        rec.idle_since = now
    return _change(rec, ChangeCause.SET_STATE, now, previous, call_id)


def can_reserve(rec: AgentRecord) -> bool:
    """No pending reservation, and available or on_call with a free slot."""
    if rec.res_call is not None:
        return False
    if rec.state == S.AVAILABLE:
        return True
    return rec.state == S.ON_CALL and len(rec.interactions) < rec.max_concurrent


def reserve(rec: AgentRecord, call_id: str, ttl_s: float, now: float) -> AgentChange | None:
    """Reserve for ``call_id``; None if not reservable. Caller checks ``rec.res_call``."""
    if not can_reserve(rec) or call_id in rec.interactions:
        return None
    previous = rec.state
    rec.res_call, rec.res_expires = call_id, now + ttl_s
    if rec.state == S.AVAILABLE:
        _enter(rec, S.RESERVED, now)
    return _change(rec, ChangeCause.RESERVE, now, previous, call_id)


def confirm(
    rec: AgentRecord, call_id: str, now: float, ring_expires: float | None = None
) -> AgentChange:
    """reserved → ringing (expiring at ``ring_expires``, None: never) → on_call (on_call +
    pending reservation: add the interaction)."""
    if rec.res_call != call_id:
        raise ReservationLost(rec.agent_id, call_id)
    previous = rec.state
    if rec.state == S.RESERVED:
        rec.res_expires = ring_expires
        _enter(rec, S.RINGING, now)
    else:  # ringing, or on_call with a pending reservation
        rec.res_call = rec.res_expires = None
        rec.interactions.add(call_id)
        _enter(rec, S.ON_CALL, now)
    return _change(rec, ChangeCause.CONFIRM, now, previous, call_id)


def release(rec: AgentRecord, call_id: str, wrap_up: bool, now: float) -> AgentChange | None:
    """Drop the reservation or end the interaction; None if the agent holds nothing for it."""
    previous = rec.state
    if rec.res_call == call_id:
        rec.res_call = rec.res_expires = None
        if rec.state in (S.RESERVED, S.RINGING):
            _enter(rec, S.AVAILABLE, now)
    elif call_id in rec.interactions:
        rec.interactions.discard(call_id)
        if not rec.interactions:
            _after_last_interaction(rec, wrap_up, now)
    else:
        return None
    return _change(rec, ChangeCause.RELEASE, now, previous, call_id)


def _after_last_interaction(rec: AgentRecord, wrap_up: bool, now: float) -> None:
    if rec.res_call is not None:  # the next contact is already assigned: no wrap-up
        _enter(rec, S.RESERVED, now)
    elif wrap_up:
        _enter(rec, S.WRAP_UP, now)
    else:
        _enter(rec, S.AVAILABLE, now)
        rec.idle_since = now
