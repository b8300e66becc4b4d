"""Agent state in Redis (production): shared by every engine process, atomic by Lua.

Layout (``P`` = prefix, default ``ivr:{agents}:``; the ``{agents}`` hash tag keeps every
key in one slot)::

    P ids              SET   every registered agent id
    P agent:<id>       HASH  state, since, idle_since, max (max concurrent), res_call,
                             res_exp (reservation or ringing expiry); absent = none
    P calls:<id>       SET   call ids of the agent's current interactions
    P reservations     ZSET  agent id → res_exp, expiring reservations only (the sweep)
    P changes          pub/sub channel: one JSON change per transition (``redis_codec``)

Times are epoch seconds written by the client (``repr(float)``), so engine hosts need NTP.
Each operation is one script (``redis_lua.py``) that reads, checks and writes one agent, or
walks the candidates of ``reserve_first``, with no other command in between: two processes
can never both reserve an agent. Scripts build key names from the prefix, so this needs a
single Redis (with replicas or Sentinel), not Redis Cluster. There is no index of available
agents: ``snapshot`` (one script, O(agents)) is the routing input and the policy orders it.
Commands are not retried: a failure is ``AgentStateUnavailable`` at once (the call flow
fails closed), since retrying ``confirm`` after a lost reply would advance it twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from ivr_engine.agents.errors import (
    AgentStateUnavailable,
    InvalidTransition,
    ReservationLost,
    UnknownAgent,
)
from ivr_engine.agents.memory import check_reserve_args, check_ring_ttl, utc_now
from ivr_engine.agents.model import (
    SET_STATE_HINT,
    SET_STATE_TARGETS,
    AgentChange,
    AgentSnapshot,
    AgentState,
    set_state_sources,
    to_timestamp,
)
from ivr_engine.agents.redis_codec import as_list, decode_agent, decode_change
from ivr_engine.agents.redis_lua import SCRIPTS
from ivr_engine.redis_client import REDIS_FAILURES, open_redis, redis_guard

log = logging.getLogger(__name__)
DEFAULT_PREFIX = "ivr:{agents}:"
_WHAT = "agent state store (Redis)"
Script = Callable[..., Awaitable[Any]]


class RedisAgentStateStore:
    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], datetime] = utc_now,
        timeout_s: float = 2.0,
        owns_client: bool = False,
    ) -> None:
        self._client, self._prefix, self._clock = client, prefix, clock
        self._timeout_s, self._owns_client = timeout_s, owns_client
        self._unreadable = 0  # agents left out of snapshots because their hash did not read
        self._scripts: dict[str, Script] = {
            name: client.register_script(source) for name, source in SCRIPTS.items()
        }
        self._feeds: set[PubSub] = set()
        self._closing = False

    @classmethod
    def from_url(
        cls,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], datetime] = utc_now,
        connect_timeout_s: float = 1.0,
        timeout_s: float = 2.0,
    ) -> RedisAgentStateStore:
        client = open_redis(url, connect_timeout_s=connect_timeout_s)
        return cls(client, prefix=prefix, clock=clock, timeout_s=timeout_s, owns_client=True)

    def _guard(self) -> AbstractAsyncContextManager[None]:
        return redis_guard(self._timeout_s, AgentStateUnavailable, _WHAT)

    async def _run(self, name: str, now: datetime | None, *args: str) -> dict[str, Any]:
        at = repr(to_timestamp(self._clock() if now is None else now))
        async with self._guard():
            raw = await self._scripts[name](args=[self._prefix, at, *args])
        doc: dict[str, Any] = json.loads(raw)
        return doc

    async def register_agent(
        self, agent_id: str, *, max_concurrent: int = 1, now: datetime | None = None
    ) -> AgentSnapshot:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        doc = await self._run("register", now, agent_id, str(max_concurrent))
        return decode_agent(doc["agent"])

    async def get(self, agent_id: str, *, now: datetime | None = None) -> AgentSnapshot:
        agents = as_list((await self._run("snapshot", now, agent_id))["agents"])
        if not agents:
            raise UnknownAgent(agent_id)
        return decode_agent(agents[0])

    async def snapshot(self, *, now: datetime | None = None) -> Mapping[str, AgentSnapshot]:
        docs = as_list((await self._run("snapshot", now))["agents"])
        agents = []
        for doc in docs:
            try:
                agents.append(decode_agent(doc))
            except AgentStateUnavailable as exc:  # one changed hash must not stop routing
                self._unreadable += 1
                if self._unreadable & (self._unreadable - 1) == 0:  # 1st, 2nd, 4th, 8th...
                    log.warning(
                        "agent state: left out an agent (%d so far): %s", self._unreadable, exc
                    )
        return {agent.agent_id: agent for agent in sorted(agents, key=lambda a: a.agent_id)}

    async def set_state(
        self, agent_id: str, state: AgentState, now: datetime | None = None
    ) -> AgentSnapshot:
        target = AgentState(state)
        sources = ",".join(sorted(set_state_sources(target)))
        doc = await self._run("set_state", now, agent_id, target, sources)
        if doc.get("error") == "unknown":
            raise UnknownAgent(agent_id)
        if doc.get("error") == "transition":
            hint = "" if target in SET_STATE_TARGETS else SET_STATE_HINT
            raise InvalidTransition(agent_id, doc["state"], target, hint)
        return decode_agent(doc["agent"])

    async def reserve(
        self, agent_id: str, call_id: str, ttl_s: float, *, now: datetime | None = None
    ) -> bool:
        return await self._reserve([agent_id], call_id, ttl_s, now, strict=True) is not None

    async def reserve_first(
        self,
        candidate_ids: Sequence[str],
        call_id: str,
        ttl_s: float,
        *,
        now: datetime | None = None,
    ) -> str | None:
        return await self._reserve(candidate_ids, call_id, ttl_s, now, strict=False)

    async def _reserve(
        self,
        candidate_ids: Sequence[str],
        call_id: str,
        ttl_s: float,
        now: datetime | None,
        *,
        strict: bool,
    ) -> str | None:
        check_reserve_args(call_id, ttl_s)
        if not candidate_ids:
            return None
        moment = self._clock() if now is None else now
        expires = repr(to_timestamp(moment) + ttl_s)
        mode = "1" if strict else "0"
        doc = await self._run("reserve", moment, call_id, expires, mode, *candidate_ids)
        if doc.get("error") == "unknown":
            raise UnknownAgent(candidate_ids[0])
        reserved = doc["reserved"]
        return reserved if isinstance(reserved, str) else None

    async def confirm(
        self,
        agent_id: str,
        call_id: str,
        *,
        ring_ttl_s: float | None = None,
        now: datetime | None = None,
    ) -> AgentState:
        check_ring_ttl(ring_ttl_s)
        moment = self._clock() if now is None else now
        ring_expires = "" if ring_ttl_s is None else repr(to_timestamp(moment) + ring_ttl_s)
        doc = await self._run("confirm", moment, agent_id, call_id, ring_expires)
        if doc.get("error") == "unknown":
            raise UnknownAgent(agent_id)
        if doc.get("error") == "lost":
            raise ReservationLost(agent_id, call_id)
        return AgentState(doc["state"])

    async def release(
        self, agent_id: str, call_id: str, *, wrap_up: bool = True, now: datetime | None = None
    ) -> bool:
        doc = await self._run("release", now, agent_id, call_id, "1" if wrap_up else "0")
        if doc.get("error") == "unknown":
            raise UnknownAgent(agent_id)
        return bool(doc["released"])

    async def expire_reservations(self, *, now: datetime | None = None) -> list[str]:
        return [str(agent_id) for agent_id in as_list((await self._run("sweep", now))["expired"])]

    def changes(self) -> AbstractAsyncContextManager[AsyncIterator[AgentChange]]:
        return self._subscribe()

    @asynccontextmanager
    async def _subscribe(self) -> AsyncIterator[AsyncIterator[AgentChange]]:
        pubsub = self._client.pubsub()
        try:
            async with self._guard():
                await pubsub.subscribe(self._prefix + "changes")
                while (await pubsub.get_message(timeout=None) or {}).get("type") != "subscribe":
                    pass
        except AgentStateUnavailable:
            await _close(pubsub)
            raise
        self._feeds.add(pubsub)
        try:
            yield self._listen(pubsub)
        finally:
            self._feeds.discard(pubsub)
            await _close(pubsub)

    async def _listen(self, pubsub: PubSub) -> AsyncIterator[AgentChange]:
        try:
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                try:
                    change = decode_change(message["data"])
                except AgentStateUnavailable as exc:  # published by something else
                    log.warning("agent change feed: skipped a message: %s", exc)
                    continue
                yield change
        except (*REDIS_FAILURES, UnicodeDecodeError) as exc:  # not UTF-8: redis-py's decoding
            if not self._closing:  # no deadline: the feed waits for changes as long as it lives
                raise AgentStateUnavailable(f"{_WHAT} failed: {exc!r}") from exc

    async def aclose(self) -> None:
        self._closing = True
        for pubsub in list(self._feeds):
            await _close(pubsub)
        if self._owns_client:
            await self._client.aclose()


async def _close(pubsub: PubSub) -> None:
    close: Callable[[], Awaitable[None]] = pubsub.aclose  # untyped in redis-py
    await close()
