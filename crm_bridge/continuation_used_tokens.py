"""Which continuation tokens were redeemed already: the ``UsedTokenStore`` port and two stores.

Single use is enforced at ``redeem`` through a ``UsedTokenStore``: the first redeem of a
token id wins (Redis ``SET NX`` with a TTL of the token's remaining lifetime); a second one
is refused. A store that cannot answer raises ``UsedTokenStoreUnavailable`` (fail closed).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from redis.asyncio import Redis

from crm_bridge.continuation_errors import UsedTokenStoreUnavailable
from ivr_engine.redis_client import open_redis, redis_guard

__all__ = ["InMemoryUsedTokenStore", "RedisUsedTokenStore", "UsedTokenStore"]


class UsedTokenStore(Protocol):
    async def mark_used(self, token_id: str, ttl_s: float) -> bool:
        """Record ``token_id`` as used for ``ttl_s``; False if it already was (atomic)."""
        ...


class InMemoryUsedTokenStore:
    """One process only (tests, single-node demo); forgets used ids once they expire."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._used: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []

    async def mark_used(self, token_id: str, ttl_s: float) -> bool:
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:
            expiry, old = heapq.heappop(self._expiries)
            if self._used.get(old) == expiry:
                del self._used[old]
        if token_id in self._used:
            return False
        self._used[token_id] = now + ttl_s
        heapq.heappush(self._expiries, (now + ttl_s, token_id))
        return True


class RedisUsedTokenStore:
    """``SET <prefix><token id> 1 NX PX <remaining lifetime>``: shared by every process."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "ivr:continuation:used:",
        timeout_s: float = 1.0,
        owns_client: bool = False,
    ) -> None:
        self._client, self._prefix = client, prefix
        self._timeout_s, self._owns_client = timeout_s, owns_client

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "ivr:continuation:used:", timeout_s: float = 1.0
    ) -> RedisUsedTokenStore:
        client = open_redis(url, connect_timeout_s=timeout_s, decode_responses=False)
        return cls(client, prefix=prefix, timeout_s=timeout_s, owns_client=True)

    async def mark_used(self, token_id: str, ttl_s: float) -> bool:
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        what = "used-token store (Redis)"
        async with redis_guard(self._timeout_s, UsedTokenStoreUnavailable, what):
            created: Any = await self._client.set(self._prefix + token_id, b"1", nx=True, px=ttl_ms)
        return bool(created)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
