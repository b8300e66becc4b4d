"""One contract for both desktop session stores: in-process, and the real Redis at 127.0.0.1.

Each Redis case uses its own key prefix and deletes its keys afterwards; time comes from a
fake clock (epoch-like seconds), so expiry is tested without sleeping.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Protocol

import pytest
from redis.asyncio import Redis

from ivr_engine.desktop.redis_sessions import RedisSessionStore
from ivr_engine.desktop.sessions import MemorySessionStore, SessionStore, SessionStoreUnavailable
from tests.redis_support import REDIS_URL, delete_prefix

SECRET = b"k" * 32


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_741_608_000.0

    def __call__(self) -> float:
        return self.now


class OpenStore(Protocol):
    async def __call__(
        self, clock: FakeClock, *, secret: bytes | None = ..., max_per_agent: int = ...
    ) -> SessionStore: ...


@pytest.fixture(params=["memory", "redis"])
async def open_store(request: pytest.FixtureRequest) -> AsyncIterator[OpenStore]:
    """Opens stores of one kind (Redis: one fresh prefix); closes them and deletes the keys."""
    prefix = f"test:{{desktop-{uuid.uuid4().hex}}}:"
    stores: list[SessionStore] = []

    async def make(
        clock: FakeClock, *, secret: bytes | None = SECRET, max_per_agent: int = 10
    ) -> SessionStore:
        store: SessionStore
        if request.param == "memory":
            store = MemorySessionStore(
                secret=secret or SECRET, ttl_s=60, max_per_agent=max_per_agent, clock=clock
            )
        else:
            client = Redis.from_url(REDIS_URL, decode_responses=True)
            store = RedisSessionStore(
                client,
                secret=secret or SECRET,
                ttl_s=60,
                prefix=prefix,
                max_per_agent=max_per_agent,
                clock=clock,
            )
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.aclose()
    await delete_prefix(prefix)


async def test_sessions_are_signed_random_and_expire(open_store: OpenStore) -> None:
    clock = FakeClock()
    store = await open_store(clock)
    other = await open_store(clock, secret=b"j" * 32)
    one, two = (await store.create("a100"))[0], (await store.create("a100"))[0]
    assert one.session_id != two.session_id and len(one.session_id) >= 43
    cookie = store.cookie_value(one)
    assert await store.from_cookie(cookie) == one
    assert await other.from_cookie(cookie) is None  # the signature is checked
    assert await store.from_cookie(cookie[:-1] + ("A" if cookie[-1] != "A" else "B")) is None
    assert await store.from_cookie("x" * 300) is None and await store.from_cookie(None) is None
    clock.now += 61
    assert await store.from_cookie(cookie) is None and await store.sessions_of("a100") == []
    assert {s.session_id for s in await store.expire()} == {one.session_id, two.session_id}
    assert await store.expire() == []  # each expired session is returned once
    assert await store.agents_with_sessions() == set()


async def test_an_agent_keeps_at_most_max_sessions(open_store: OpenStore) -> None:
    clock = FakeClock()
    store = await open_store(clock, max_per_agent=3)
    made, pushed_out = [], []
    for _ in range(5):
        clock.now += 1
        session, evicted = await store.create("a100")
        made.append(session)
        pushed_out.append([s.session_id for s in evicted])
    assert [s.session_id for s in await store.sessions_of("a100")] == [
        s.session_id for s in made[2:]
    ]
    assert await store.get(made[0].session_id) is None
    # each session pushed out is named to the login that pushed it (its sockets get closed)
    assert pushed_out == [[], [], [], [made[0].session_id], [made[1].session_id]]


async def test_drop_ends_one_session_and_drop_agent_all_of_them(open_store: OpenStore) -> None:
    clock = FakeClock()
    store = await open_store(clock)
    one, two = (await store.create("a100"))[0], (await store.create("a100"))[0]
    bob = (await store.create("b200"))[0]
    assert await store.agents_with_sessions() == {"a100", "b200"}
    assert await store.drop(one.session_id) == one
    assert await store.drop(one.session_id) is None
    assert await store.get(one.session_id) is None and await store.get(two.session_id) == two
    assert await store.drop_agent("a100") == [two]
    assert await store.agents_with_sessions() == {"b200"}
    assert await store.sessions_of("b200") == [bob]


async def test_short_secrets_are_refused(open_store: OpenStore) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        await open_store(FakeClock(), secret=b"short" * 3)


async def test_redis_processes_share_one_cookie_secret_and_the_sessions() -> None:
    """Two stores opened without a secret (two engine processes) agree on every cookie."""
    prefix = f"test:{{desktop-{uuid.uuid4().hex}}}:"
    first = await RedisSessionStore.open(REDIS_URL, ttl_s=60, prefix=prefix)
    second = await RedisSessionStore.open(REDIS_URL, ttl_s=60, prefix=prefix)
    try:
        session = (await first.create("a100"))[0]
        assert await second.from_cookie(first.cookie_value(session)) == session
        await second.drop(session.session_id)
        assert await first.from_cookie(first.cookie_value(session)) is None
    finally:
        await first.aclose()
        await second.aclose()
        await delete_prefix(prefix)


async def test_redis_down_is_a_typed_error() -> None:
    with pytest.raises(SessionStoreUnavailable):
        await RedisSessionStore.open("redis://127.0.0.1:1/0", ttl_s=60)
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    store = RedisSessionStore(client, secret=SECRET, ttl_s=60)
    try:
        with pytest.raises(SessionStoreUnavailable):
            await store.create("a100")
    finally:
        await store.aclose()
