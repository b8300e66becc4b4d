"""Desktop sessions in Redis: every engine process sharing ``agent_state_url`` sees them.

Layout (``P`` = prefix, default ``ivr:{desktop}:``)::

    P secret             STRING  the cookie-signing secret, made once by whoever starts first
    P s:<session id>     HASH    agent, created, expires (epoch seconds), credentials (the
                                 agent's credentials tag at login); Redis drops it an hour
                                 after ``expires`` should the sweep never run
    P by_agent:<agent>   ZSET    session id → created (the agent's sessions, oldest first)
    P expiry             ZSET    session id → expires (the sweep)
    P agents             SET     agents with at least one session (deleted-agent sweep)

Each write is one Lua script, so two processes never half-apply a login, a logout or a
sweep, and a session swept by one process is returned to that process only (it closes the
sockets everywhere through the desktop relay). Scripts build key names from the prefix: a
single Redis (as for agent state), not Redis Cluster. Storing the secret next to the
sessions adds no power: whoever can write these keys can already create a session.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from ivr_engine.desktop.sessions import (
    CookieSigner,
    Session,
    SessionStoreUnavailable,
    new_session_id,
)
from ivr_engine.redis_client import REDIS_FAILURES, open_redis, redis_guard

DEFAULT_PREFIX = "ivr:{desktop}:"
_WHAT = "desktop sessions (Redis)"
_FAILURES = (*REDIS_FAILURES, UnicodeDecodeError)  # not UTF-8: not written by us (not at open)
_GRACE_MS = 3_600_000

_DELETE = """
local function delete(p, id)
  local key = p .. 's:' .. id
  local row = redis.call('HMGET', key, 'agent', 'created', 'expires', 'credentials')
  redis.call('DEL', key)
  redis.call('ZREM', p .. 'expiry', id)
  if not row[1] then return nil end
  local mine = p .. 'by_agent:' .. row[1]
  redis.call('ZREM', mine, id)
  if redis.call('ZCARD', mine) == 0 then redis.call('SREM', p .. 'agents', row[1]) end
  return {id, row[1], row[2], row[3], row[4] or ''}
end
"""

_CREATE = (
    _DELETE
    + """
local p, id, agent, created, expires = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key, mine = p .. 's:' .. id, p .. 'by_agent:' .. agent
redis.call('HSET', key, 'agent', agent, 'created', created, 'expires', expires,
  'credentials', ARGV[8])
redis.call('PEXPIRE', key, ARGV[6])
redis.call('ZADD', mine, created, id)
redis.call('ZADD', p .. 'expiry', expires, id)
redis.call('SADD', p .. 'agents', agent)
local out = {}
local extra = redis.call('ZCARD', mine) - tonumber(ARGV[7])
if extra > 0 then
  for _, old in ipairs(redis.call('ZRANGE', mine, 0, extra - 1)) do
    local row = delete(p, old)
    if row then table.insert(out, row) end
  end
end
return out
"""
)

_DROP = _DELETE + "return delete(ARGV[1], ARGV[2])"

_DROP_AGENT = (
    _DELETE
    + """
local out = {}
for _, id in ipairs(redis.call('ZRANGE', ARGV[1] .. 'by_agent:' .. ARGV[2], 0, -1)) do
  local row = delete(ARGV[1], id)
  if row then table.insert(out, row) end
end
redis.call('DEL', ARGV[1] .. 'by_agent:' .. ARGV[2])
redis.call('SREM', ARGV[1] .. 'agents', ARGV[2])
return out
"""
)

_EXPIRE = (
    _DELETE
    + """
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', ARGV[1] .. 'expiry', '-inf', ARGV[2])) do
  local row = delete(ARGV[1], id)
  if row then table.insert(out, row) end
end
return out
"""
)

_SCRIPTS = {"create": _CREATE, "drop": _DROP, "drop_agent": _DROP_AGENT, "expire": _EXPIRE}
Script = Callable[..., Awaitable[Any]]


def _seconds(value: Any) -> float:
    """Epoch seconds as stored; 0.0 (long past: ended) for a value that does not read."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return 0.0
    return seconds if math.isfinite(seconds) else 0.0


def _session(row: list[Any]) -> Session:
    credentials = str(row[4]) if len(row) > 4 and row[4] is not None else ""
    return Session(str(row[0]), str(row[1]), _seconds(row[2]), _seconds(row[3]), credentials)


class RedisSessionStore:
    """Open with ``await RedisSessionStore.open(url)`` (reads or makes the shared secret)."""

    def __init__(
        self,
        client: Redis,
        *,
        secret: bytes,
        ttl_s: float,
        prefix: str = DEFAULT_PREFIX,
        max_per_agent: int = 10,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 2.0,
    ) -> None:
        self._client, self._prefix, self._clock = client, prefix, clock
        self._signer = CookieSigner(secret)
        self._ttl_s, self._max_per_agent, self._timeout_s = ttl_s, max_per_agent, timeout_s
        self._scripts: dict[str, Script] = {
            name: client.register_script(source) for name, source in _SCRIPTS.items()
        }

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        ttl_s: float,
        secret: bytes | None = None,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 2.0,
    ) -> RedisSessionStore:
        """``secret`` None: the one shared in Redis (made by the first process to start)."""
        client = open_redis(url, connect_timeout_s=1.0)
        try:
            if secret is None:
                async with redis_guard(timeout_s, SessionStoreUnavailable, _WHAT):
                    await client.set(prefix + "secret", secrets.token_hex(32), nx=True)
                    secret = str(await client.get(prefix + "secret")).encode("ascii")
        except SessionStoreUnavailable:
            await client.aclose()
            raise
        return cls(client, secret=secret, ttl_s=ttl_s, prefix=prefix, clock=clock)

    async def _call(self, work: Awaitable[Any]) -> Any:
        async with redis_guard(self._timeout_s, SessionStoreUnavailable, _WHAT, failures=_FAILURES):
            return await work

    async def _script(self, name: str, *args: str | float | int) -> Any:
        return await self._call(self._scripts[name](keys=[], args=[self._prefix, *args]))

    def cookie_value(self, session: Session) -> str:
        return self._signer.cookie_value(session)

    async def create(self, agent_id: str, credentials: str = "") -> tuple[Session, list[Session]]:
        now = self._clock()
        session = Session(new_session_id(), agent_id, now, now + self._ttl_s, credentials)
        keep_ms = int(self._ttl_s * 1000) + _GRACE_MS
        args = (session.session_id, agent_id, repr(now), repr(session.expires), keep_ms)
        rows = await self._script("create", *args, self._max_per_agent, credentials)
        return session, [_session(row) for row in rows]

    async def from_cookie(self, value: str | None) -> Session | None:
        session_id = self._signer.session_id(value)
        return None if session_id is None else await self.get(session_id)

    async def get(self, session_id: str) -> Session | None:
        key = self._prefix + "s:" + session_id
        fields = ["agent", "created", "expires", "credentials"]
        row = await self._call(self._client.hmget(key, fields))
        if row[0] is None or _seconds(row[2]) <= self._clock():  # unreadable: ended
            return None
        return _session([session_id, *row])

    async def drop(self, session_id: str) -> Session | None:
        row = await self._script("drop", session_id)
        return None if row is None else _session(row)

    async def sessions_of(self, agent_id: str) -> list[Session]:
        ids = await self._call(self._client.zrange(self._prefix + "by_agent:" + agent_id, 0, -1))
        found = await asyncio.gather(*(self.get(session_id) for session_id in ids))
        return [session for session in found if session is not None]

    async def agents_with_sessions(self) -> set[str]:
        return set(await self._call(self._client.smembers(self._prefix + "agents")))

    async def drop_agent(self, agent_id: str) -> list[Session]:
        return [_session(row) for row in await self._script("drop_agent", agent_id)]

    async def expire(self) -> list[Session]:
        return [_session(row) for row in await self._script("expire", repr(self._clock()))]

    async def aclose(self) -> None:
        await self._client.aclose()
