"""Background work of the desktop: the agent change feed → sockets, the relay (notes from
the other engine processes) → sockets, and the session sweep.

All run for the app's lifetime (``app.cleanup_ctx``). The feed is re-subscribed when it
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
from ivr_engine.desktop.directory import AgentDirectory
from ivr_engine.desktop.hub import DesktopHub
from ivr_engine.desktop.messages import state_json
from ivr_engine.desktop.relay import DesktopRelay, DesktopRelayUnavailable
from ivr_engine.desktop.sessions import Session, SessionStore, SessionStoreUnavailable

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


async def follow_relay(relay: DesktopRelay, hub: DesktopHub, *, retry_s: float = 1.0) -> None:
    """Apply the other processes' notes (pops, logouts) to this process's sockets."""
    delay = retry_s
    while True:
        try:
            async with relay.notes() as notes:
                delay = retry_s
                async for note in notes:
                    if note.origin != hub.origin:
                        await hub.apply(note)
            return
        except DesktopRelayUnavailable as exc:
            log.warning("desktop: relay unavailable (%s); retry in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)


async def sweep_sessions(
    sessions: SessionStore,
    hub: DesktopHub,
    *,
    every_s: float,
    directory: AgentDirectory | None = None,
) -> None:
    """Every ``every_s`` seconds: end expired sessions, and those of agents deleted from the
    directory, and close their sockets (in every process, through the hub's relay)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await sweep_once(sessions, hub, directory)
        except SessionStoreUnavailable as exc:
            log.warning("desktop: session sweep skipped: %s", exc)


async def sweep_once(
    sessions: SessionStore, hub: DesktopHub, directory: AgentDirectory | None
) -> None:
    for session in await sessions.expire():
        await hub.close_session(session.session_id, "session expired: log in again")
    if directory is None:
        return
    gone: list[Session] = []
    for agent_id in await sessions.agents_with_sessions():
        if directory.get(agent_id) is None:
            gone += await sessions.drop_agent(agent_id)
    for session in gone:
        await hub.close_session(session.session_id, "this agent no longer exists")
