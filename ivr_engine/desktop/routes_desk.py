"""The state buttons and the pop's dismiss button (session and same-origin required)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from aiohttp import web

from ivr_engine.agents import AgentState
from ivr_engine.api.errors import ApiError
from ivr_engine.desktop.bodies import Action, StateBody
from ivr_engine.desktop.errors import STATE_WORDS
from ivr_engine.desktop.guards import check_post_origin, read_json, require_session
from ivr_engine.desktop.keys import AGENTS, HUB
from ivr_engine.desktop.messages import state_json

routes = web.RouteTableDef()

# action → (target state, the state the agent must be in, or None for "any that allows it")
ACTIONS: Final[Mapping[Action, tuple[AgentState, AgentState | None]]] = {
    "available": (AgentState.AVAILABLE, None),
    "pause": (AgentState.PAUSED, None),
    "finish_wrap_up": (AgentState.AVAILABLE, AgentState.WRAP_UP),
    "log_out": (AgentState.LOGGED_OUT, None),
}


@routes.post("/api/state")
async def change_state(request: web.Request) -> web.Response:
    """Invalid transitions are 409s with a sentence for the agent (``errors`` middleware)."""
    check_post_origin(request)
    _session, agent = await require_session(request)
    body = await read_json(request, StateBody)
    target, required = ACTIONS[body.action]
    store = request.app[AGENTS]
    if required is not None:
        current = (await store.get(agent.agent_id)).state
        if current != required:
            where = STATE_WORDS.get(current.value, current.value)
            message = f"You are not in wrap-up (you are {where})."
            raise ApiError(409, "not_in_wrap_up", message, extra={"state": current.value})
    snapshot = await store.set_state(agent.agent_id, target)
    return web.json_response({"state": state_json(snapshot, "set_state")})


@routes.post("/api/pop/dismiss")
async def dismiss_pop(request: web.Request) -> web.Response:
    check_post_origin(request)
    _session, agent = await require_session(request)
    await request.app[HUB].clear_pop(agent.agent_id)
    return web.json_response({"pop": None})
