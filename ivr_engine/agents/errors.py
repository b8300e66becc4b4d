"""Errors raised by the agent state stores.

``AgentStateUnavailable`` is the peer-outage error (Redis down, slow or refusing): routing
catches it and fails closed to its fallback context. The others are caller mistakes or lost
races that the call flow handles (pick another agent, refresh the desktop).
"""

from __future__ import annotations

from ivr_engine.domain.errors import IvrEngineError

__all__ = [
    "AgentStateError",
    "AgentStateUnavailable",
    "ChangeFeedLagged",
    "InvalidTransition",
    "ReservationLost",
    "UnknownAgent",
]


class AgentStateError(IvrEngineError):
    """Base class for agent state errors."""


class AgentStateUnavailable(AgentStateError):
    """The agent state store could not answer (down, timed out, or refused the command)."""


class UnknownAgent(AgentStateError, LookupError):
    """No agent with this id has been registered."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"agent {agent_id!r} is not registered (call register_agent first)")
        self.agent_id = agent_id


class InvalidTransition(AgentStateError, ValueError):
    """The transition table does not allow this change (see ``agents.model.TRANSITIONS``)."""

    def __init__(self, agent_id: str, current: str, target: str, hint: str = "") -> None:
        message = f"agent {agent_id!r}: cannot go from {str(current)!r} to {str(target)!r}"
        super().__init__(f"{message}: {hint}" if hint else message)
        self.agent_id = agent_id
        self.current = str(current)
        self.target = str(target)


class ReservationLost(AgentStateError):
    """The agent holds no reservation for this call any more (expired, released, or never)."""

    def __init__(self, agent_id: str, call_id: str) -> None:
        super().__init__(f"agent {agent_id!r} holds no reservation for call {call_id!r}")
        self.agent_id = agent_id
        self.call_id = call_id


class ChangeFeedLagged(AgentStateError):
    """A change-feed subscriber fell too far behind; re-read ``snapshot()`` and resubscribe."""
