"""Background work of the desktop: the agent change feed → sockets, and the session sweep.

Both run for the app's lifetime (``app.cleanup_ctx``). The feed is re-subscribed when it
lags or the store is down (with a capped back-off), and each connected agent is then sent a
fresh state, since changes may have been missed in between.
"""

from __future__ import annotations

import asyncio
import logging

from ivr_engine.agents import (
    AgentStateStore,
    AgentStateUnavailable,
    ChangeFeedLagged,
    UnknownAgent,
)
from ivr_engine.desktop.hub import DesktopHub
from ivr_engine.desktop.messages import state_json
from ivr_engine.desktop.sessions import SessionStore

log = logging.getLogger(__name__)

MAX_RETRY_S = 30.0


async def resend_states(agents: AgentStateStore, hub: DesktopHub) -> None:
    for agent_id in hub.connected_agents():
        try:
            snapshot = await agents.get(agent_id)
        except UnknownAgent:
            continue
        await hub.send(agent_id, {"type": "state", "state": state_json(snapshot)})


async def follow_agent_changes(
    agents: AgentStateStore, hub: DesktopHub, *, retry_s: float = 1.0
) -> None:
    """Push every agent change to that agent's sockets until the store closes its feed."""
    delay = retry_s
    while True:
        try:
            async with agents.changes() as feed:
                await resend_states(agents, hub)
                delay = retry_s
                async for change in feed:
                    await hub.push_state(change)
            return
        except ChangeFeedLagged:
            log.warning("desktop: agent change feed lagged; resubscribing")
        except AgentStateUnavailable:
            log.warning("desktop: agent change feed unavailable; retry in %.1f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)


async def sweep_sessions(sessions: SessionStore, hub: DesktopHub, *, every_s: float) -> None:
    """End expired sessions and close their sockets, every ``every_s`` seconds."""
    while True:
        await asyncio.sleep(every_s)
        for session in sessions.expire():
            await hub.close_session(session.session_id, "session expired: log in again")
