"""What the desktop sends: the agent's state and the WebSocket messages (TypedDicts).

Server → browser messages, one JSON object per WebSocket text frame:

* ``{"type": "hello", "agent": ..., "state": ..., "pop": ...}`` once, on connect;
* ``{"type": "state", "state": ...}`` on every change of this agent's live state;
* ``{"type": "pop", "pop": ...}`` when the agent's phone rings (``ScreenPopJson``);
* ``{"type": "pop_cleared"}`` when the agent dismissed the pop (in another tab, say);
* ``{"type": "bye", "reason": ...}`` before the server closes (logout, session expired).

The browser sends nothing but ``"ping"`` (answered ``{"type": "pong"}``).
"""

from __future__ import annotations

from typing import Literal

from typing_extensions import TypedDict

from ivr_engine.agents import AgentChange, AgentSnapshot
from ivr_engine.desktop.directory import DesktopAgent
from ivr_engine.desktop.pop import ScreenPopJson, iso_time


class AgentJson(TypedDict):
    agent_id: str
    name: str
    sip_endpoint: str


class StateJson(TypedDict):
    state: str
    since: str
    since_ms: int  # for ordering: the page ignores a state older than the one it shows
    call_id: str | None  # the reserved / ringing call, if any
    interactions: int
    cause: str | None  # why it changed (set_state, reserve, confirm, release, expiry)


class HelloMessage(TypedDict):
    type: Literal["hello"]
    agent: AgentJson
    state: StateJson | None  # None: the agent state store did not answer
    pop: ScreenPopJson | None


class StateMessage(TypedDict):
    type: Literal["state"]
    state: StateJson


class PopMessage(TypedDict):
    type: Literal["pop"]
    pop: ScreenPopJson


class ByeMessage(TypedDict):
    type: Literal["bye"]
    reason: str


class SimpleMessage(TypedDict):
    type: Literal["pong", "pop_cleared"]


Message = HelloMessage | StateMessage | PopMessage | ByeMessage | SimpleMessage


def agent_json(agent: DesktopAgent) -> AgentJson:
    return {"agent_id": agent.agent_id, "name": agent.name, "sip_endpoint": agent.sip_endpoint}


def state_json(snapshot: AgentSnapshot, cause: str | None = None) -> StateJson:
    reservation = snapshot.reservation
    return {
        "state": snapshot.state.value,
        "since": iso_time(snapshot.since),
        "since_ms": round(snapshot.since.timestamp() * 1000),
        "call_id": reservation.call_id if reservation is not None else None,
        "interactions": snapshot.interaction_count,
        "cause": cause,
    }


def state_message(change: AgentChange) -> StateMessage:
    return {"type": "state", "state": state_json(change.agent, change.cause.value)}
