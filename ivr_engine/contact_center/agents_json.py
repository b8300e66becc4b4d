"""Response shapes of ``/v1/agents`` (the handlers return them; the OpenAPI document is
generated from them). No credential is ever part of them, only whether one is set."""

from __future__ import annotations

from typing_extensions import TypedDict


class PauseJson(TypedDict):
    """Why a paused agent is paused, when the engine knows (device or queue state)."""

    reason: str  # device_unreachable | device_busy | queue_paused
    detail: str  # e.g. "PJSIP/agent-1 UNAVAILABLE", the queue's PausedReason
    by_engine: bool  # the engine paused them and gives it back when the cause ends


class AgentJson(TypedDict):
    agent_id: str
    name: str
    endpoint: str  # the SIP dial string (sip_endpoint in request bodies)
    team: str
    skills: dict[str, int]
    languages: list[str]
    max_concurrent: int
    has_password: bool
    has_api_token: bool
    state: str | None  # live state; None when the agent state store did not answer
    since: str | None
    interactions: list[str]
    pause: PauseJson | None  # set only while the agent is paused for a known reason


class AgentListJson(TypedDict):
    agents: list[AgentJson]
    agent_state_available: bool
