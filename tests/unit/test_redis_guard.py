"""``redis_guard``: the deadline and the typed "unavailable" error of the Redis stores.

Against the real Redis at 127.0.0.1:6379 (``IVR_TEST_REDIS_URL``) where a command is run;
each test uses its own key prefix. Unreachable Redis fails the test.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from ivr_engine.redis_client import open_redis, redis_guard
from tests.redis_support import REDIS_URL, require_redis


class StoreUnavailable(Exception):
    pass


@pytest.fixture
async def client() -> AsyncIterator[Redis]:
    await require_redis()
    client = open_redis(REDIS_URL, connect_timeout_s=2.0)
    yield client
    await client.aclose()


@pytest.fixture
async def key(client: Redis) -> AsyncIterator[str]:
    key = f"ivr_test:redis_guard:{os.getpid()}:{secrets.token_hex(4)}"
    yield key
    await client.delete(key)


def _guard(timeout_s: float = 2.0) -> AbstractAsyncContextManager[None]:
    return redis_guard(timeout_s, StoreUnavailable, "test store (Redis)")


async def test_a_command_that_answers_gives_its_reply(client: Redis, key: str) -> None:
    async with _guard():
        await client.set(key, "v")
        reply = await client.get(key)
    assert reply == "v"


async def test_the_deadline_becomes_the_typed_error_from_the_timeout(
    client: Redis, key: str
) -> None:
    with pytest.raises(StoreUnavailable) as raised:
        async with _guard(timeout_s=0.05):
            await client.blpop([key], timeout=5)  # nothing is ever pushed
    assert isinstance(raised.value.__cause__, TimeoutError)
    assert str(raised.value) == f"test store (Redis) failed: {raised.value.__cause__!r}"
    assert await client.ping()  # the client is usable again


async def test_a_redis_error_becomes_the_typed_error_from_it(client: Redis, key: str) -> None:
    await client.set(key, "not a number")
    with pytest.raises(StoreUnavailable) as raised:
        async with _guard():
            await client.incr(key)  # Redis refuses: ResponseError
    cause = raised.value.__cause__
    assert isinstance(cause, ResponseError)
    assert raised.value.__suppress_context__
    assert str(raised.value) == f"test store (Redis) failed: {cause!r}"


async def test_an_os_error_becomes_the_typed_error_from_it() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    with pytest.raises(StoreUnavailable) as raised:
        async with _guard():
            raise refused
    assert raised.value.__cause__ is refused
    assert str(raised.value) == f"test store (Redis) failed: {refused!r}"


async def test_other_exceptions_pass_through_unless_named_in_failures() -> None:
    undecodable = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    with pytest.raises(UnicodeDecodeError):
        async with _guard():
            raise undecodable
    failures = (RedisError, OSError, TimeoutError, UnicodeDecodeError)
    with pytest.raises(StoreUnavailable) as raised:
        async with redis_guard(1.0, StoreUnavailable, "test store (Redis)", failures=failures):
            raise undecodable
    assert raised.value.__cause__ is undecodable


async def _poll(client: Redis, key: str, stop: asyncio.Event) -> None:
    while not stop.is_set():  # the way out should a cancellation be lost
        async with _guard():
            await client.get(key)


async def test_a_cancellation_stays_a_cancellation_at_every_stage_of_a_command(
    client: Redis, key: str
) -> None:
    """A cancel landing at any loop turn of a command (sent, waiting, reply landing) ends
    the task as cancelled, never as the typed error nor as a command that carried on."""
    for turns in range(40):
        stop = asyncio.Event()
        task = asyncio.create_task(_poll(client, key, stop))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1.0)
        stop.set()
        await asyncio.wait({task})
        assert done, f"cancellation lost after {turns} loop turns"
        assert task.cancelled(), f"after {turns} loop turns: {task.exception()!r}"
