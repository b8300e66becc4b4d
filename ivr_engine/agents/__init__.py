"""Live agent state for the contact centre: one port, in-process and Redis implementations.

``open_agent_state_store(None)`` gives the embedded in-process store; a ``redis://`` URL
gives the shared Redis store. See ``model.py`` for the states and the transition table,
``store.py`` for the port, and ``redis_store.py`` for the Redis layout.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ivr_engine.agents.errors import (
    AgentStateError,
    AgentStateUnavailable,
    ChangeFeedLagged,
    InvalidTransition,
    ReservationLost,
    UnknownAgent,
)
from ivr_engine.agents.memory import InMemoryAgentStateStore, utc_now
from ivr_engine.agents.model import (
    TRANSITIONS,
    AgentChange,
    AgentSnapshot,
    AgentState,
    ChangeCause,
    Reservation,
)
from ivr_engine.agents.redis_store import DEFAULT_PREFIX, RedisAgentStateStore
from ivr_engine.agents.store import AgentStateStore
from ivr_engine.agents.sweeper import sweep_reservations
from ivr_engine.domain.errors import ConfigError
from ivr_engine.timeline.urls import redact

__all__ = [
    "TRANSITIONS",
    "AgentChange",
    "AgentSnapshot",
    "AgentState",
    "AgentStateError",
    "AgentStateStore",
    "AgentStateUnavailable",
    "ChangeCause",
    "ChangeFeedLagged",
    "InMemoryAgentStateStore",
    "InvalidTransition",
    "RedisAgentStateStore",
    "Reservation",
    "ReservationLost",
    "UnknownAgent",
    "check_agent_state_url",
    "open_agent_state_store",
    "sweep_reservations",
]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def open_agent_state_store(
    url: str | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    clock: Callable[[], datetime] = utc_now,
) -> AgentStateStore:
    """``None`` or ``memory://`` → in-process; ``redis://HOST:PORT/DB`` → Redis."""
    check_agent_state_url(url)
    if url is None or url == "memory://":
        return InMemoryAgentStateStore(clock=clock)
    return RedisAgentStateStore.from_url(url, prefix=prefix, clock=clock)


def check_agent_state_url(url: str | None) -> None:
    """``ConfigError`` unless ``url`` is None, ``memory://`` or a Redis URL."""
    if url is None or url == "memory://" or url.startswith(_REDIS_SCHEMES):
        return
    raise ConfigError(
        f"agent_state_url {redact(url)!r}: use memory:// (in-process) or redis://HOST:PORT/DB"
    )
