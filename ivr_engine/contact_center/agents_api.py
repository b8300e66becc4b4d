"""``GET /v1/agents``: the roster with each agent's live state (supervisors, dashboards).

Read-only: profiles come from ``agents.yaml`` (``ivr-engine agents import`` builds it from a
CSV); states change through the desktop and Asterisk. Passwords never leave the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from ivr_engine.agents import AgentStateStore
from ivr_engine.agents.errors import AgentStateError
from ivr_engine.routing import Agent


def agents_routes(
    profiles: list[Agent],
    agents: AgentStateStore,
    clock: Callable[[], datetime],
    *,
    store_timeout_s: float = 0.5,
) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/v1/agents")
    async def list_agents(_request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(store_timeout_s):
                live = await agents.snapshot(now=clock())
            available = True
        except (TimeoutError, AgentStateError):
            live, available = {}, False
        rows: list[dict[str, Any]] = []
        for agent in sorted(profiles, key=lambda a: a.agent_id):
            snap = live.get(agent.agent_id)
            rows.append(
                {
                    "agent_id": agent.agent_id,
                    "name": agent.name,
                    "endpoint": agent.endpoint,
                    "team": agent.team,
                    "skills": dict(agent.skills),
                    "languages": sorted(agent.languages),
                    "max_concurrent": agent.max_concurrent,
                    "state": snap.state.value if snap is not None else None,
                    "since": snap.since.isoformat() if snap is not None else None,
                    "interactions": list(snap.interactions) if snap is not None else [],
                }
            )
        body = {"agents": rows, "agent_state_available": available}
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    return routes
