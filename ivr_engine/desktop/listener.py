"""Background work of the desktop: the agent change feed → sockets, the relay (notes from
the other engine processes) → sockets, and the session sweep.

All run for the app's lifetime (``app.cleanup_ctx``). The feed is re-subscribed when it
lags or the store is down (with a capped back-off), and each connected agent is then sent a
fresh state, since changes may have been missed in between. The sweep also ends, as soon as
the directory changes, the sessions of an agent whose password or API token changed (on the
HTTP API, by ``agents import --to-database`` picked up by the roster poll, or on a restart
with Redis sessions).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import nullcontext, suppress

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
    directory, and close their sockets (in every process, through the hub's relay). Whenever
    the directory changes (and once at start: Redis sessions outlive a restart), at once:
    end the sessions made with a password or token the agent no longer has."""
    sweeper = SessionSweeper(sessions, hub, directory)
    with nullcontext(asyncio.Event()) if directory is None else directory.watch() as changed:
        changed.set()
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(every_s):
                    await changed.wait()
            changed.clear()
            try:
                await sweeper.sweep()
            except SessionStoreUnavailable as exc:
                log.warning("desktop: session sweep skipped: %s", exc)


class SessionSweeper:
    """Ends sessions past their end, of deleted agents, and of changed credentials.

    The credentials are checked only for agents whose ``credentials_tag`` changed since the
    last check that went through (all of them the first time); a session made meanwhile with
    the new credentials carries the new tag and stays.
    """

    def __init__(
        self, sessions: SessionStore, hub: DesktopHub, directory: AgentDirectory | None
    ) -> None:
        self._sessions, self._hub, self._directory = sessions, hub, directory
        self._checked: dict[str, str] | None = None  # agent → tag as last checked

    async def sweep(self) -> None:
        for session in await self._sessions.expire():
            await self._hub.close_session(session.session_id, "session expired: log in again")
        if self._directory is None:
            return
        tags = {agent.agent_id: agent.credentials_tag for agent in self._directory}
        with_sessions = await self._sessions.agents_with_sessions()
        for agent_id in with_sessions - tags.keys():
            await self._end(await self._sessions.drop_agent(agent_id), _GONE)
        checked = self._checked
        for agent_id in with_sessions & tags.keys():
            if checked is None or checked.get(agent_id) != tags[agent_id]:
                await self._end_stale(agent_id, tags[agent_id])
        self._checked = tags

    async def _end_stale(self, agent_id: str, tag: str) -> None:
        for session in await self._sessions.sessions_of(agent_id):
            if session.credentials != tag:
                dropped = await self._sessions.drop(session.session_id)
                await self._end([] if dropped is None else [dropped], _NEW_CREDENTIALS)

    async def _end(self, ended: list[Session], reason: str) -> None:
        for session in ended:
            await self._hub.close_session(session.session_id, reason)


_GONE = "this agent no longer exists"
_NEW_CREDENTIALS = "your password or API token changed: log in again"


async def sweep_once(
    sessions: SessionStore, hub: DesktopHub, directory: AgentDirectory | None
) -> None:
    """One full sweep (every agent's credentials checked)."""
    await SessionSweeper(sessions, hub, directory).sweep()
