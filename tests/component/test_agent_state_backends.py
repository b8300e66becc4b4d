"""What only one backend does: the Redis key layout and its failures, the in-process feed
backlog, the factory, and the expiry sweep."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from ivr_engine.agents import (
    AgentState,
    AgentStateUnavailable,
    ChangeCause,
    ChangeFeedLagged,
    InMemoryAgentStateStore,
    RedisAgentStateStore,
    open_agent_state_store,
    sweep_reservations,
)
from ivr_engine.domain.errors import ConfigError, IvrEngineError
from tests.component.test_agent_state_contract import T0, FakeClock
from tests.redis_support import REDIS_URL, delete_prefix

S = AgentState


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    prefix = f"test:{{agents-{uuid.uuid4().hex}}}:"
    yield prefix
    await delete_prefix(prefix)


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_redis_keys_follow_the_documented_layout(prefix: str, raw: Redis) -> None:
    clock = FakeClock()
    store = RedisAgentStateStore.from_url(REDIS_URL, prefix=prefix, clock=clock)
    try:
        for agent_id in ("a1", "a2"):
            await store.register_agent(agent_id, max_concurrent=2)
            await store.set_state(agent_id, S.AVAILABLE)
        async with store.changes() as feed:
            assert await store.reserve("a1", "c1", ttl_s=15)
            assert (await anext(feed)).cause == ChangeCause.RESERVE
        await store.reserve("a2", "c2", ttl_s=15)
        await store.confirm("a2", "c2")
        await store.confirm("a2", "c2")
    finally:
        await store.aclose()
    assert await raw.smembers(prefix + "ids") == {"a1", "a2"}
    a1 = await raw.hgetall(prefix + "agent:a1")
    assert a1 == {
        "state": "reserved",
        "since": repr(T0.timestamp()),
        "idle_since": repr(T0.timestamp()),
        "max": "2",
        "res_call": "c1",
        "res_exp": repr(T0.timestamp() + 15),
    }
    assert (await raw.hgetall(prefix + "agent:a2"))["state"] == "on_call"
    assert await raw.smembers(prefix + "calls:a2") == {"c2"}
    assert await raw.zrange(prefix + "reservations", 0, -1, withscores=True) == [
        ("a1", T0.timestamp() + 15)
    ]


async def test_redis_changes_are_json_on_the_changes_channel(prefix: str, raw: Redis) -> None:
    store = RedisAgentStateStore.from_url(REDIS_URL, prefix=prefix, clock=FakeClock())
    pubsub = raw.pubsub()
    close: Callable[[], Awaitable[None]] = pubsub.aclose  # untyped in redis-py
    try:
        async with asyncio.timeout(2):
            await pubsub.subscribe(prefix + "changes")
            assert (await pubsub.get_message(timeout=None))["type"] == "subscribe"
            await store.register_agent("a1")
            message = await pubsub.get_message(timeout=None)
        doc = json.loads(message["data"])
        assert (doc["cause"], doc["agent"]["id"], doc["agent"]["state"]) == (
            "registered",
            "a1",
            "logged_out",
        )
    finally:
        await close()
        await store.aclose()


async def test_a_redis_that_is_down_fails_fast_with_a_typed_error() -> None:
    store = RedisAgentStateStore.from_url(f"redis://127.0.0.1:{unused_port()}/0")
    started = time.monotonic()
    try:
        with pytest.raises(AgentStateUnavailable, match="Redis") as down:
            await store.snapshot()
        with pytest.raises(AgentStateUnavailable):
            await store.reserve_first(["a1"], "c1", 10)
        with pytest.raises(AgentStateUnavailable):
            async with store.changes():
                pass
    finally:
        await store.aclose()
    assert isinstance(down.value, IvrEngineError)
    assert time.monotonic() - started < 1.5


async def test_a_redis_that_never_answers_times_out() -> None:
    peers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)
        await reader.read()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisAgentStateStore.from_url(
        f"redis://127.0.0.1:{port}/0", connect_timeout_s=0.3, timeout_s=0.3
    )
    started = time.monotonic()
    try:
        with pytest.raises(AgentStateUnavailable):
            await store.set_state("a1", S.AVAILABLE)
    finally:
        await store.aclose()
        for writer in peers:
            writer.close()
        server.close()
        await server.wait_closed()
    assert time.monotonic() - started < 1.5


async def test_a_slow_in_process_subscriber_is_told_to_resync() -> None:
    store = InMemoryAgentStateStore(clock=FakeClock(), max_feed_backlog=2)
    async with store.changes() as feed:
        await store.register_agent("a1")
        await store.set_state("a1", S.AVAILABLE)
        await store.set_state("a1", S.PAUSED)  # third change: backlog full
        assert (await anext(feed)).cause == ChangeCause.REGISTERED
        assert (await anext(feed)).agent.state == S.AVAILABLE
        with pytest.raises(ChangeFeedLagged, match="resubscribe"):
            await anext(feed)
    async with store.changes() as fresh:
        await store.set_state("a1", S.AVAILABLE)
        assert (await anext(fresh)).agent.state == S.AVAILABLE


async def test_the_factory_picks_the_backend_from_the_url() -> None:
    assert isinstance(open_agent_state_store(None), InMemoryAgentStateStore)
    assert isinstance(open_agent_state_store("memory://"), InMemoryAgentStateStore)
    redis_store = open_agent_state_store(REDIS_URL)
    assert isinstance(redis_store, RedisAgentStateStore)
    await redis_store.aclose()
    with pytest.raises(ConfigError, match=r"'mysql://x'.*redis://HOST:PORT/DB"):
        open_agent_state_store("mysql://x")


async def test_the_sweep_publishes_expiries() -> None:
    clock = FakeClock()
    store = InMemoryAgentStateStore(clock=clock)
    await store.register_agent("a1")
    await store.set_state("a1", S.AVAILABLE)
    assert await store.reserve("a1", "c1", ttl_s=5)
    async with store.changes() as feed:
        clock.now = T0 + timedelta(seconds=6)
        sweeper = asyncio.create_task(sweep_reservations(store, interval_s=0.01))
        try:
            async with asyncio.timeout(2):
                change = await anext(feed)
        finally:
            sweeper.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sweeper
    assert (change.cause, change.agent.state, change.call_id) == (
        ChangeCause.EXPIRY,
        S.AVAILABLE,
        "c1",
    )
