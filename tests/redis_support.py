"""The real Redis the tests use, in one place.

* ``REDIS_URL``: ``IVR_TEST_REDIS_URL``, default ``redis://127.0.0.1:6379/0``.
* ``require_redis()``: probe it; unreachable → the test FAILS (never skipped), saying so.
* ``delete_prefix(prefix)``: delete every key under a test's own prefix.
* ``redis_url_for_db(n)``: the same server, database ``n`` (tests that need a whole one).

The fixtures built on these (``redis_raw``, ``redis_url``) are in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

REDIS_URL = os.environ.get("IVR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_url_for_db(db: int) -> str:
    """``REDIS_URL`` with its database number replaced by ``db`` (query kept)."""
    parts = urlsplit(REDIS_URL)
    return urlunsplit(parts._replace(path=f"/{db}"))


async def require_redis() -> None:
    probe = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await probe.ping()
    except (RedisError, OSError) as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable: {exc!r}", pytrace=False)
    finally:
        await probe.aclose()


async def delete_prefix(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
