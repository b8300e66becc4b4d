"""JSON documents written by the Lua scripts → snapshots and changes.

An agent document is the agent hash plus its call ids: ``{"id", "state", "since",
"idle_since", "max", "res_call", "res_exp", "calls"}``; times are epoch seconds as text and
absent fields are missing. Lua's cjson writes an empty list as ``{}``.

A document that does not read (a hash or a feed message changed by something else than the
scripts) is ``AgentStateUnavailable``: the store answered, but not with agent state.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ivr_engine.agents.errors import AgentStateUnavailable
from ivr_engine.agents.model import (
    AgentChange,
    AgentSnapshot,
    AgentState,
    ChangeCause,
    Reservation,
    from_timestamp,
)


def as_list(value: Any) -> list[Any]:
    return [] if value is None or value == {} else list(value)


def _time(value: str | None) -> datetime | None:
    return None if value is None else from_timestamp(float(value))


# OSError: datetime.fromtimestamp beyond what the C library's gmtime takes (EOVERFLOW)
_UNREADABLE = (
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
    OSError,
    RecursionError,
)


def decode_agent(doc: dict[str, Any]) -> AgentSnapshot:
    try:
        return _agent(doc)
    except _UNREADABLE as exc:
        raise AgentStateUnavailable(f"corrupt agent state in Redis: {exc!r}") from None


def _agent(doc: dict[str, Any]) -> AgentSnapshot:
    reservation = None
    if doc.get("res_call") is not None:
        reservation = Reservation(doc["res_call"], _time(doc.get("res_exp")))
    return AgentSnapshot(
        agent_id=doc["id"],
        state=AgentState(doc["state"]),
        since=from_timestamp(float(doc["since"])),
        idle_since=_time(doc.get("idle_since")),
        interactions=tuple(sorted(as_list(doc.get("calls")))),
        max_concurrent=int(doc["max"]),
        reservation=reservation,
    )


def decode_change(payload: str | bytes) -> AgentChange:
    try:
        doc = json.loads(payload)
        previous = doc.get("previous")
        return AgentChange(
            cause=ChangeCause(doc["cause"]),
            at=from_timestamp(float(doc["at"])),
            previous=None if previous is None else AgentState(previous),
            agent=_agent(doc["agent"]),
            call_id=doc.get("call_id"),
        )
    except _UNREADABLE as exc:
        raise AgentStateUnavailable(f"corrupt agent change in Redis: {exc!r}") from None
