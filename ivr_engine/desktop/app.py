"""``create_desktop_app``: the agent desktop as an aiohttp sub-app (mount it at ``/desktop``).

Routes (relative to the mount point):

* ``GET /`` the page; ``GET /static/{desktop.js,desktop.css}``
* ``POST /login`` ``{"agent_id", "password"}`` or ``{"token"}`` → session cookie
* ``POST /logout``; ``GET /api/me``; ``POST /api/state`` ``{"action": ...}``;
  ``POST /api/pop/dismiss``
* ``GET /ws`` the WebSocket (state changes and screen pops)

The hub is built by the caller, because routing needs it too (``hub.pop(agent_id, ring)``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ivr_engine.agents import AgentStateStore
from ivr_engine.api.errors import error_middleware
from ivr_engine.desktop import listener, routes_auth, routes_desk, routes_page, ws
from ivr_engine.desktop.assets import load_assets
from ivr_engine.desktop.config import DesktopConfig
from ivr_engine.desktop.directory import AgentDirectory
from ivr_engine.desktop.errors import agent_error_middleware, security_headers_middleware
from ivr_engine.desktop.hub import DesktopHub
from ivr_engine.desktop.keys import (
    AGENTS,
    ASSETS,
    CHECK_GATE,
    CONFIG,
    DIRECTORY,
    HUB,
    SESSIONS,
    THROTTLE,
)
from ivr_engine.desktop.passwords import dummy_hash
from ivr_engine.desktop.sessions import MemorySessionStore, SessionStore
from ivr_engine.desktop.throttle import CheckGate, LoginLimits, MemoryLoginLimits
from ivr_engine.stopping import cancel_and_wait

log = logging.getLogger(__name__)


def create_desktop_app(
    *,
    directory: AgentDirectory,
    agents: AgentStateStore,
    hub: DesktopHub,
    config: DesktopConfig | None = None,
    clock: Callable[[], float] = time.monotonic,
    sessions: SessionStore | None = None,
    limits: LoginLimits | None = None,
) -> web.Application:
    """The desktop sub-app; ``clock`` (seconds, monotonic) drives session times when
    ``sessions`` is None (then in this process: ``MemorySessionStore``) and lockout times
    when ``limits`` is None (then in this process: ``MemoryLoginLimits``). The caller owns
    (and closes) the ``sessions`` and ``limits`` it passes: with several engine processes,
    both of ``open_shared_desktop``."""
    config = config or DesktopConfig()
    app = web.Application(
        middlewares=[security_headers_middleware, error_middleware, agent_error_middleware],
        client_max_size=config.max_body_bytes,
    )
    app[CONFIG] = config
    app[DIRECTORY] = directory
    app[AGENTS] = agents
    app[HUB] = hub
    if sessions is None:
        secret = config.cookie_secret or secrets.token_bytes(32)
        sessions = MemorySessionStore(secret=secret, ttl_s=config.session_ttl_s, clock=clock)
    app[SESSIONS] = sessions
    app[THROTTLE] = MemoryLoginLimits.for_config(config, clock) if limits is None else limits
    app[CHECK_GATE] = CheckGate(
        running=config.max_password_checks, waiting=config.max_waiting_password_checks
    )
    dummy_hash()  # made now: the first unknown agent id takes as long as any other
    app[ASSETS] = load_assets()
    for table in (routes_page.routes, routes_auth.routes, routes_desk.routes, ws.routes):
        app.add_routes(table)
    app.cleanup_ctx.append(_background_tasks)
    app.on_shutdown.append(_close_sockets)
    return app


async def _close_sockets(app: web.Application) -> None:
    """Before the server waits for handlers to finish: open WebSockets would hold it up."""
    await app[HUB].close_all("server shutting down")


async def _background_tasks(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    tasks = {
        asyncio.create_task(
            listener.follow_agent_changes(app[AGENTS], app[HUB], retry_s=config.feed_retry_s),
            name="desktop-agent-feed",
        ),
        asyncio.create_task(
            listener.sweep_sessions(
                app[SESSIONS],
                app[HUB],
                every_s=config.sweep_interval_s,
                directory=app[DIRECTORY],
            ),
            name="desktop-session-sweep",
        ),
    }
    relay = app[HUB].relay
    if relay is not None:
        tasks.add(
            asyncio.create_task(
                listener.follow_relay(relay, app[HUB], retry_s=config.feed_retry_s),
                name="desktop-relay",
            )
        )
    for task in tasks:
        task.add_done_callback(_log_failure)
    try:
        yield
    finally:
        await cancel_and_wait(tasks)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("desktop task %s failed", task.get_name(), exc_info=task.exception())
