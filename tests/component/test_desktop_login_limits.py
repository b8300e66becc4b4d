"""The desktop's failed-login limits: one contract for the in-process and the Redis store;
the Redis store shared by several engine processes (the real Redis at 127.0.0.1): two
stores, two desktop apps over HTTP, two real engines with ``agent_state_url: redis://``.

Each Redis case uses its own key prefix and deletes its keys afterwards (the engines, which
use the default prefixes, get a Redis database of their own). The contract runs on a fake
clock (expiry of counts and trust without sleeping); what Redis itself expires is read from
its TTLs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from ivr_engine.agents import open_agent_state_store
from ivr_engine.app import Engine
from ivr_engine.desktop import (
    AgentDirectory,
    DesktopConfig,
    DesktopHub,
    create_desktop_app,
    open_shared_desktop,
)
from ivr_engine.desktop.redis_throttle import RedisLoginLimits
from ivr_engine.desktop.shared import SharedDesktop
from ivr_engine.desktop.throttle import (
    LoginLimits,
    LoginLimitsUnavailable,
    LoginThrottle,
    MemoryLoginLimits,
    TooManyAttempts,
)
from tests.component.desktop_node import PASSWORDS
from tests.component.test_agents_management_api import start_engine
from tests.component.test_desktop_app import PASSWORD
from tests.component.test_desktop_app import FakeClock as MonotonicClock
from tests.component.test_desktop_login_security import Desk, agent
from tests.redis_support import REDIS_URL, delete_prefix


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_741_608_000.0

    def __call__(self) -> float:
        return self.now


class OpenLimits(Protocol):
    def __call__(self, clock: Callable[[], float], **kw: Any) -> LoginLimits: ...


def fresh_prefix() -> str:
    return f"test:{{desktop-{uuid.uuid4().hex}}}:"


def redis_limits(prefix: str, clock: Callable[[], float], **kw: Any) -> RedisLoginLimits:
    """One engine process's limits: a client of its own on the shared prefix."""
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    return RedisLoginLimits(client, prefix=prefix, clock=clock, **kw)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = fresh_prefix()
    yield name
    await delete_prefix(name)


@pytest.fixture(params=["memory", "redis"])
async def open_limits(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[OpenLimits]:
    """Opens stores of one kind (Redis: all on one fresh prefix); closes them after."""
    opened: list[LoginLimits] = []

    def make(clock: Callable[[], float], **kw: Any) -> LoginLimits:
        limits: LoginLimits
        if request.param == "memory":
            limits = MemoryLoginLimits(LoginThrottle(clock=clock, **kw))
        else:
            limits = redis_limits(prefix, clock, **kw)
        opened.append(limits)
        return limits

    yield make
    for limits in opened:
        await limits.aclose()


# --------------------------------------------------------------------------- the contract


async def test_failures_lock_out_then_the_window_forgets_them(open_limits: OpenLimits) -> None:
    clock = FakeClock()
    limits = open_limits(clock, max_failures=3, window_s=60)
    for _ in range(3):
        assert await limits.retry_after("a") is None
        await limits.failed("a")
    assert await limits.retry_after("a") == pytest.approx(60)
    with pytest.raises(TooManyAttempts) as refused:
        await limits.begin([("a", None)])
    assert refused.value.retry_after_s == pytest.approx(60)
    clock.now += 30
    assert await limits.retry_after("a") == pytest.approx(30)
    clock.now += 31
    assert await limits.retry_after("a") is None
    await limits.begin([("a", None)])


async def test_begin_counts_on_every_key_or_none_and_release_takes_back_its_own(
    open_limits: OpenLimits,
) -> None:
    clock = FakeClock()
    limits = open_limits(clock, max_failures=3, window_s=60)
    await limits.failed("b")
    attempt = await limits.begin([("b", None), ("c", 1)])  # counted at once, on every key
    assert await limits.retry_after("b") is None and await limits.retry_after("c", 1) == 60
    with pytest.raises(TooManyAttempts):  # c is at its limit: nothing is counted on b
        await limits.begin([("b", None), ("c", 1)])
    assert await limits.retry_after("b", 3) is None
    await limits.release(attempt)  # its own count only: b's earlier failure stays
    assert await limits.retry_after("c", 1) is None and await limits.retry_after("b", 1) == 60
    assert await limits.retry_after("b", 2) is None


async def test_release_takes_back_one_of_several_attempts_made_at_the_same_time(
    open_limits: OpenLimits,
) -> None:
    clock = FakeClock()  # never moves: every attempt is counted at the same instant
    limits = open_limits(clock, max_failures=3, window_s=60)
    first = await limits.begin([("a", None)])
    await limits.begin([("a", None)])
    await limits.release(first)
    await limits.begin([("a", None)])
    assert await limits.retry_after("a", 2) is not None and await limits.retry_after("a") is None


async def test_trust_lasts_trust_s(open_limits: OpenLimits) -> None:
    clock = FakeClock()
    limits = open_limits(clock, trust_s=100)
    assert not await limits.trusted("agent:a@x")
    await limits.trust("agent:a@x")
    clock.now += 99
    assert await limits.trusted("agent:a@x") and not await limits.trusted("agent:a@y")
    clock.now += 2
    assert not await limits.trusted("agent:a@x")


async def test_keys_are_bounded_the_least_recently_counted_go_first(
    open_limits: OpenLimits,
) -> None:
    clock = FakeClock()
    limits = open_limits(clock, max_failures=3, window_s=60, max_keys=2)
    for key in ("x", "y", "z"):
        for _ in range(3):
            clock.now += 1
            await limits.failed(key)
    assert await limits.retry_after("x") is None and await limits.retry_after("z") is not None


# --------------------------------------------------------------------------- shared by processes


async def test_parallel_attempts_through_two_processes_pass_the_limit_once(prefix: str) -> None:
    """Without the shared store each process let its own 5 through (10 in all)."""
    one, two = redis_limits(prefix, FakeClock()), redis_limits(prefix, FakeClock())
    try:
        tries = [(one if i % 2 else two).begin([("agent:a@x", None)]) for i in range(30)]
        results = await asyncio.gather(*tries, return_exceptions=True)
        assert sum(not isinstance(r, BaseException) for r in results) == 5
        assert all(isinstance(r, TooManyAttempts) for r in results if isinstance(r, Exception))
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_lockout_and_a_trust_made_through_one_hold_on_the_other(prefix: str) -> None:
    clock = FakeClock()
    one, two = redis_limits(prefix, clock), redis_limits(prefix, clock)
    try:
        for _ in range(5):
            await one.begin([("agent:a@x", None)])
        with pytest.raises(TooManyAttempts) as refused:
            await two.begin([("agent:a@x", None)])
        assert refused.value.retry_after_s == pytest.approx(300)
        await one.trust("agent:a@y")
        assert await two.trusted("agent:a@y")
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_success_through_one_releases_only_its_own_attempt(prefix: str) -> None:
    clock = FakeClock()
    one, two = redis_limits(prefix, clock), redis_limits(prefix, clock)
    try:
        for _ in range(4):
            await one.begin([("agent:a@x", None)])  # four wrong passwords through one
        await two.release(await two.begin([("agent:a@x", None)]))  # the right one through two
        await one.begin([("agent:a@x", None)])  # a fifth failure: the limit
        with pytest.raises(TooManyAttempts):
            await two.begin([("agent:a@x", None)])
    finally:
        await one.aclose()
        await two.aclose()


async def test_redis_keys_expire_with_the_window_and_the_trust(prefix: str) -> None:
    limits = redis_limits(prefix, FakeClock(), window_s=300, trust_s=86_400, max_keys=3)
    reader = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await limits.begin([(f"k{i}", None) for i in range(5)])  # five keys, three kept
        await limits.trust("agent:a@x")
        counted = [key async for key in reader.scan_iter(match=prefix + "login:f:*")]
        assert sorted(counted) == [f"{prefix}login:f:k{i}" for i in (2, 3, 4)]
        assert await reader.zcard(prefix + "login:keys") == 3
        for key in [*counted, prefix + "login:keys"]:
            assert 290_000 < await reader.pttl(key) <= 300_000
        assert 86_390_000 < await reader.pttl(prefix + "login:t:agent:a@x") <= 86_400_000
    finally:
        await limits.aclose()
        await reader.aclose()


async def test_each_count_renews_a_keys_expiry_and_a_released_key_is_gone(prefix: str) -> None:
    limits = redis_limits(prefix, FakeClock(), window_s=300)
    reader = Redis.from_url(REDIS_URL, decode_responses=True)
    key = prefix + "login:f:agent:a@x"
    try:
        attempt = await limits.begin([("agent:a@x", None)])
        await limits.release(attempt)
        assert not await reader.exists(key)  # its only count taken back: nothing kept
        assert await reader.zscore(prefix + "login:keys", key) is None  # nor in the index
        await limits.begin([("agent:a@x", None)])
        await reader.pexpire(key, 1_000)  # as if most of the window had passed
        await limits.begin([("agent:a@x", None)])
        assert 290_000 < await reader.pttl(key) <= 300_000
    finally:
        await limits.aclose()
        await reader.aclose()


async def test_redis_down_is_a_typed_error() -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    limits = RedisLoginLimits(client)
    try:
        with pytest.raises(LoginLimitsUnavailable):
            await limits.begin([("agent:a@x", None)])
        with pytest.raises(LoginLimitsUnavailable):
            await limits.trusted("agent:a@x")
    finally:
        await limits.aclose()


# --------------------------------------------------------------------------- two desktops


@asynccontextmanager
async def shared_desk(prefix: str, config: DesktopConfig) -> AsyncIterator[Desk]:
    """One engine process's desktop, sharing sessions and login limits through Redis."""
    shared = await open_shared_desktop(REDIS_URL, config, prefix=prefix)
    agents = open_agent_state_store(None)
    directory = AgentDirectory([agent("a100"), agent("a200")])
    desktop = create_desktop_app(
        directory=directory,
        agents=agents,
        hub=DesktopHub(None),
        config=config,
        sessions=shared.sessions,
        limits=shared.limits,
    )
    root = web.Application()
    root.add_subapp("/desktop", desktop)
    try:
        async with TestClient(TestServer(root)) as client:
            yield Desk(client, agents, DesktopHub(None), directory, MonotonicClock())
    finally:
        await shared.aclose()
        await agents.aclose()


@asynccontextmanager
async def two_desks(prefix: str, **config: Any) -> AsyncIterator[tuple[Desk, Desk]]:
    settings = DesktopConfig(secure_cookie=False, **config)
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(shared_desk(prefix, settings))
        two = await stack.enter_async_context(shared_desk(prefix, settings))
        yield one, two


async def test_open_shared_desktop_counts_in_redis_only_when_sessions_are_there(
    prefix: str,
) -> None:
    shared: list[SharedDesktop] = [
        await open_shared_desktop(None),
        await open_shared_desktop("memory://"),
        await open_shared_desktop(REDIS_URL, prefix=prefix),
    ]
    try:
        kinds = [type(one.limits) for one in shared]
        assert kinds == [MemoryLoginLimits, MemoryLoginLimits, RedisLoginLimits]
    finally:
        for one in shared:
            await one.aclose()


async def test_guesses_spread_over_two_desktops_are_stopped_at_one_limit(prefix: str) -> None:
    """30 wrong passwords at once, half through each process: 5 are checked, not 10."""
    async with two_desks(prefix) as (one, two):
        guesses = [(one, two)[i % 2].login_status("a100", f"guess-{i}") for i in range(30)]
        assert Counter(await asyncio.gather(*guesses)) == {401: 5, 429: 25}


async def test_a_lockout_on_one_desktop_holds_on_the_other(prefix: str) -> None:
    async with two_desks(prefix) as (one, two):
        for i in range(5):
            assert await one.login_status("a100", f"guess-{i}") == 401
        assert await two.login_status("a100", PASSWORD) == 429
        assert await two.login_status("a100", PASSWORD, source="127.0.0.2") == 200


async def test_a_login_on_one_desktop_takes_back_only_its_own_attempt(prefix: str) -> None:
    async with two_desks(prefix) as (one, two):
        for i in range(4):
            assert await one.login_status("a100", f"guess-{i}") == 401
        assert await two.login_status("a100", PASSWORD) == 200
        assert await one.login_status("a100", "one-more") == 401
        assert await two.login_status("a100", PASSWORD) == 429  # 5 failures in the window


async def test_the_desk_an_agent_logged_in_at_is_trusted_by_every_desktop(prefix: str) -> None:
    """Distributed guessing through both processes meets the per-agent ceiling (10 here);
    the address the agent logged in from through the first one is still let in by the other."""
    async with two_desks(prefix, max_failed_logins_per_agent=10) as (one, two):
        assert await one.login_status("a100", PASSWORD) == 200
        for desk, source in ((one, "127.0.0.2"), (two, "127.0.0.3")):
            for i in range(5):
                assert await desk.login_status("a100", f"guess-{i}", source=source) == 401
        assert await two.login_status("a100", PASSWORD, source="127.0.0.4") == 429
        assert await one.login_status("a100", PASSWORD, source="127.0.0.4") == 429
        assert await two.login_status("a100", PASSWORD) == 200


async def login_a100(limits: LoginLimits) -> tuple[int, dict[str, Any]]:
    """One correct login of a100 on a desktop counting failures in ``limits``."""
    agents = open_agent_state_store(None)
    desktop = create_desktop_app(
        directory=AgentDirectory([agent("a100")]),
        agents=agents,
        hub=DesktopHub(None),
        config=DesktopConfig(secure_cookie=False),
        limits=limits,
    )
    root = web.Application()
    root.add_subapp("/desktop", desktop)
    try:
        async with TestClient(TestServer(root)) as client:
            body = {"agent_id": "a100", "password": PASSWORD}
            async with client.post("/desktop/login", json=body) as response:
                return response.status, await response.json()
    finally:
        await limits.aclose()
        await agents.aclose()


async def test_a_login_is_refused_with_503_while_the_limits_cannot_be_counted() -> None:
    """Fail closed, as the sessions do: no count, no password check, a clear 503."""
    status, answer = await login_a100(RedisLoginLimits.from_url("redis://127.0.0.1:1/0"))
    assert status == 503, answer
    assert answer["error"]["code"] == "login_limits_unavailable"
    assert "try again" in answer["error"]["message"]


class LosesRedisAfterCounting(RedisLoginLimits):
    """Redis answers the attempt's count, then goes away (release and trust fail)."""

    async def release(self, attempt: Any) -> None:
        raise LoginLimitsUnavailable("login limits (Redis) failed: connection lost")

    async def trust(self, key: str) -> None:
        raise LoginLimitsUnavailable("login limits (Redis) failed: connection lost")


async def test_a_correct_password_logs_in_when_the_count_cannot_be_taken_back(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The password is checked by then: the login succeeds, the left count expires with the
    window (review finding: it was a 503, and five of them locked the agent out)."""
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    status, answer = await login_a100(LosesRedisAfterCounting(client, prefix=prefix))
    assert status == 200, answer
    assert "could not take back a login attempt's count" in caplog.text


# --------------------------------------------------------------------------- two engines

ENGINE_REDIS = REDIS_URL.rsplit("/", 1)[0] + "/11"  # the engines' default prefixes: db 11


async def _clear_engine_keys() -> None:
    client = Redis.from_url(ENGINE_REDIS)
    try:
        for pattern in ("ivr:{agents}:*", "ivr:{desktop}:*"):
            keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
            if keys:
                await client.delete(*keys)
    finally:
        await client.aclose()


async def test_two_engines_sharing_agent_state_share_the_login_limits(tmp_path: Path) -> None:
    """The engine's own wiring: with agent_state_url: redis://, a lockout made through one
    engine's desktop holds on the other's (each engine counted its own before)."""
    await _clear_engine_keys()
    url = f"sqlite:///{tmp_path / 'roster.db'}"
    engines: list[Engine] = []
    try:
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
            engines.append(await start_engine(url, tmp_path / name, agent_state_url=ENGINE_REDIS))
        async with aiohttp.ClientSession() as http:

            async def login(engine: Engine, password: str) -> int:
                where = f"http://127.0.0.1:{engine.http_port}/desktop/login"
                body = {"agent_id": "a1", "password": password}
                async with http.post(where, json=body) as response:
                    return response.status

            for i in range(3):
                assert await login(engines[0], f"guess-{i}") == 401
            for i in range(2):
                assert await login(engines[1], f"guess-{i}") == 401
            assert await login(engines[0], PASSWORDS["a1"]) == 429
            assert await login(engines[1], PASSWORDS["a1"]) == 429
    finally:
        for engine in engines:
            await engine.stop()
        await _clear_engine_keys()
