"""Single use through the real Redis at 127.0.0.1:6379 (``IVR_TEST_REDIS_URL``).

Each test uses its own key prefix and deletes it afterwards. Unreachable Redis fails the test.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from crm_bridge.continuation import ContinuationTokens
from crm_bridge.continuation_errors import TokenAlreadyUsed, UsedTokenStoreUnavailable
from crm_bridge.continuation_used_tokens import RedisUsedTokenStore
from crm_bridge.continuation_wire import Keyring, SigningKey
from tests.redis_support import REDIS_URL

KEYRING = Keyring(SigningKey("k1", secrets.token_bytes(32)))


@pytest.fixture
async def prefix(redis_raw: Redis) -> AsyncIterator[str]:
    prefix = f"ivr_test:continuation:{os.getpid()}:{secrets.token_hex(4)}:"
    yield prefix
    keys = [key async for key in redis_raw.scan_iter(match=prefix + "*")]
    if keys:
        await redis_raw.delete(*keys)


async def test_redeem_is_single_use_across_processes_sharing_redis(
    prefix: str, redis_raw: Redis
) -> None:
    stores = [RedisUsedTokenStore.from_url(REDIS_URL, prefix=prefix) for _ in range(2)]
    engines = [ContinuationTokens(KEYRING, store) for store in stores]
    token = engines[0].issue(case_id="case-1", customer_id="cust-1", channel="web")
    try:
        outcomes = await asyncio.gather(
            *(engine.redeem(token) for engine in engines * 4), return_exceptions=True
        )
    finally:
        for store in stores:
            await store.aclose()
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(o, TokenAlreadyUsed) for o in outcomes if o not in wins)
    ttl_ms = await redis_raw.pttl(prefix + wins[0].token_id)
    assert 898_000 < ttl_ms <= 900_000  # the token's remaining lifetime


async def test_used_marker_expires_with_the_token(prefix: str, redis_raw: Redis) -> None:
    store = RedisUsedTokenStore(redis_raw, prefix=prefix)
    assert await store.mark_used("tid", 0.2)
    assert not await store.mark_used("tid", 0.2)
    assert 0 < await redis_raw.pttl(prefix + "tid") <= 200
    await store.aclose()  # does not own the client: still usable
    assert await redis_raw.ping()


async def test_redis_down_fails_closed_with_a_typed_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = RedisUsedTokenStore.from_url(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    tokens = ContinuationTokens(KEYRING, store)
    token = tokens.issue(case_id="c", customer_id="u", channel="chat")
    try:
        with pytest.raises(UsedTokenStoreUnavailable, match="Redis"):
            await tokens.redeem(token)
    finally:
        await store.aclose()
