"""Failed desktop logins counted in Redis: every engine process sharing ``agent_state_url``
counts on the same keys, so several processes give a guesser no more tries than one, and a
lockout made through one process holds on every other one (and across restarts).

Layout (``P`` = prefix, default ``ivr:{desktop}:``, next to the sessions)::

    P login:f:<key>   ZSET    attempt token → when it was counted (epoch seconds); expires
                              one window after its latest count
    P login:keys      ZSET    counted key → its latest count: beyond ``max_keys`` (100,000:
                              ~360 bytes each with its counts, measured) the least recently
                              counted keys are dropped, as in memory; expires too
    P login:t:<key>   STRING  trusted until (epoch seconds); expires then

``begin`` is one Lua script: it forgets counts older than the window, checks every key
against its limit and counts the attempt on all of them or on none, so parallel attempts
through any number of processes cannot pass a limit; ``release`` takes back that attempt's
token only. Times come from the engine's clock (``time.time``): processes on several
machines need synchronised clocks (NTP), as for the sessions. The script deletes the keys
it drops from the index by the names kept there (not given in KEYS): a single Redis, as for
the sessions, not Redis Cluster.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from ivr_engine.desktop.redis_sessions import DEFAULT_PREFIX
from ivr_engine.desktop.throttle import Attempt, Limits, LoginLimitsUnavailable, TooManyAttempts
from ivr_engine.redis_client import REDIS_FAILURES, open_redis, redis_guard

_WHAT = "login limits (Redis)"
_FAILURES = (*REDIS_FAILURES, UnicodeDecodeError)

# KEYS: P login:keys, then the counted keys. ARGV: now, forget up to (now - window),
# window in ms, max_keys, the attempt's token, then (begin) each counted key's limit.
_COMMON = """
local function count_all(at, token, window_ms)
  for i = 2, #KEYS do
    redis.call('ZADD', KEYS[i], at, token)
    redis.call('PEXPIRE', KEYS[i], window_ms)
    redis.call('ZADD', KEYS[1], at, KEYS[i])
  end
end

local function bound(since, window_ms, max_keys)
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', since)
  local extra = redis.call('ZCARD', KEYS[1]) - max_keys
  if extra > 0 then
    local oldest = redis.call('ZPOPMIN', KEYS[1], extra)
    for i = 1, #oldest, 2 do redis.call('DEL', oldest[i]) end
  end
  redis.call('PEXPIRE', KEYS[1], window_ms)
end
"""

_BEGIN = (
    _COMMON
    + """
local latest = nil
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[2])
  local over = redis.call('ZCARD', KEYS[i]) - tonumber(ARGV[4 + i])
  if over >= 0 then
    local at = redis.call('ZRANGE', KEYS[i], over, over, 'WITHSCORES')[2]
    if latest == nil or tonumber(at) > tonumber(latest) then latest = at end
  end
end
if latest ~= nil then return latest end
count_all(ARGV[1], ARGV[5], ARGV[3])
bound(ARGV[2], ARGV[3], tonumber(ARGV[4]))
return false
"""
)

_FAILED = (
    _COMMON
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
count_all(ARGV[1], ARGV[5], ARGV[3])
bound(ARGV[2], ARGV[3], tonumber(ARGV[4]))
return 1
"""
)

# KEYS: P login:keys, then the attempt's keys. ARGV: the attempt's token. A key left with
# no count leaves the index too (else it would take a place under max_keys until the window
# passed, and the bound would drop live lockouts for it).
_RELEASE = """
for i = 2, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[1])
  if redis.call('ZCARD', KEYS[i]) == 0 then redis.call('ZREM', KEYS[1], KEYS[i]) end
end
return 1
"""

Script = Callable[..., Awaitable[Any]]


class RedisLoginLimits:
    """``LoginLimits`` in Redis; ``from_url`` opens its own client (closed by ``aclose``)."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_failures: int = 5,
        window_s: float = 300.0,
        max_keys: int = 100_000,
        trust_s: float = 86_400.0,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 2.0,
    ) -> None:
        self._client, self._clock, self._timeout_s = client, clock, timeout_s
        self._max_failures, self._window_s, self._max_keys = max_failures, window_s, max_keys
        self._trust_s = trust_s
        self._window_ms = max(1, math.ceil(window_s * 1000))
        self._index = prefix + "login:keys"
        self._failures = prefix + "login:f:"
        self._trusted = prefix + "login:t:"
        self._begin: Script = client.register_script(_BEGIN)
        self._failed: Script = client.register_script(_FAILED)
        self._release: Script = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> RedisLoginLimits:
        """No I/O here: the first login finds out whether Redis answers."""
        return cls(open_redis(url, connect_timeout_s=1.0), **kw)

    async def _call(self, work: Awaitable[Any]) -> Any:
        async with redis_guard(self._timeout_s, LoginLimitsUnavailable, _WHAT, failures=_FAILURES):
            return await work

    def _args(self, now: float, token: str) -> list[str | int]:
        since = now - self._window_s
        return [repr(now), repr(since), self._window_ms, self._max_keys, token]

    async def begin(self, limits: Limits) -> Attempt:
        now, token = self._clock(), secrets.token_hex(8)
        keys = [self._failures + key for key, _limit in limits]
        ceilings = [self._max_failures if limit is None else limit for _key, limit in limits]
        args = [*self._args(now, token), *ceilings]
        latest = await self._call(self._begin(keys=[self._index, *keys], args=args))
        if latest is not None:
            raise TooManyAttempts(max(1.0, float(latest) + self._window_s - now))
        return Attempt(tuple(key for key, _limit in limits), now, token)

    async def release(self, attempt: Attempt) -> None:
        keys = [self._failures + key for key in attempt.keys]
        if keys:
            await self._call(self._release(keys=[self._index, *keys], args=[attempt.token]))

    async def failed(self, key: str) -> None:
        keys = [self._index, self._failures + key]
        args = self._args(self._clock(), secrets.token_hex(8))
        await self._call(self._failed(keys=keys, args=args))

    async def retry_after(self, key: str, limit: int | None = None) -> float | None:
        limit = self._max_failures if limit is None else limit
        now = self._clock()
        since = f"({now - self._window_s!r}"
        counted = await self._call(
            self._client.zrangebyscore(self._failures + key, since, "+inf", withscores=True)
        )
        if len(counted) < limit:
            return None
        return max(1.0, float(counted[-limit][1]) + self._window_s - now)

    async def trust(self, key: str) -> None:
        until = self._clock() + self._trust_s
        trust_ms = max(1, math.ceil(self._trust_s * 1000))
        await self._call(self._client.set(self._trusted + key, repr(until), px=trust_ms))

    async def trusted(self, key: str) -> bool:
        until = await self._call(self._client.get(self._trusted + key))
        try:
            return until is not None and float(until) > self._clock()
        except ValueError:  # not written by us: not trusted
            return False

    async def aclose(self) -> None:
        await self._client.aclose()
