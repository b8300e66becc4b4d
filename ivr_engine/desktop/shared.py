"""What the desktops of several engine processes share: sessions, login limits, the relay.

``open_shared_desktop(agent_state_url)``: with ``redis://…`` (agent state shared, so several
engine processes), sessions and the failed-login counts live in Redis and pops travel over
the Redis relay; with None or ``memory://`` all stay in this process (the embedded default).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from ivr_engine.desktop.config import DesktopConfig
from ivr_engine.desktop.redis_sessions import DEFAULT_PREFIX, RedisSessionStore
from ivr_engine.desktop.redis_throttle import RedisLoginLimits
from ivr_engine.desktop.relay import DesktopRelay, RedisDesktopRelay
from ivr_engine.desktop.sessions import MemorySessionStore, SessionStore
from ivr_engine.desktop.throttle import LoginLimits, MemoryLoginLimits

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass
class SharedDesktop:
    sessions: SessionStore
    relay: DesktopRelay | None  # None: one process, nothing to relay
    limits: LoginLimits  # failed logins: pass to create_desktop_app with the sessions

    async def aclose(self) -> None:
        await self.sessions.aclose()
        await self.limits.aclose()
        if self.relay is not None:
            await self.relay.aclose()


async def open_shared_desktop(
    agent_state_url: str | None,
    config: DesktopConfig | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
) -> SharedDesktop:
    """Raises ``SessionStoreUnavailable`` when Redis does not answer at start-up. The login
    limits are ``config``'s (counts, window, trust)."""
    config = config or DesktopConfig()
    if agent_state_url is None or not agent_state_url.startswith(_REDIS_SCHEMES):
        secret = config.cookie_secret or secrets.token_bytes(32)
        in_process = MemorySessionStore(secret=secret, ttl_s=config.session_ttl_s)
        return SharedDesktop(in_process, None, MemoryLoginLimits.for_config(config))
    sessions = await RedisSessionStore.open(
        agent_state_url, ttl_s=config.session_ttl_s, secret=config.cookie_secret, prefix=prefix
    )
    relay = RedisDesktopRelay.from_url(agent_state_url, channel=prefix + "notes")
    limits = RedisLoginLimits.from_url(
        agent_state_url,
        prefix=prefix,
        max_failures=config.max_failed_logins,
        window_s=config.failed_login_window_s,
        trust_s=config.login_trust_s,
    )
    return SharedDesktop(sessions, relay, limits)
