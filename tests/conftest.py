"""Settings and fixtures shared by the whole suite.

* ``redis_raw``: a plain redis-py client (bytes) on the real Redis (``tests.redis_support``),
  probed first (unreachable → the test FAILS), closed afterwards. Keys are the test's to
  clean up.
* ``redis_url``: ``REDIS_URL``, probed once per session, for the synchronous tests
  (hypothesis) that run their own event loop: request it with
  ``@pytest.mark.usefixtures("redis_url")``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import settings
from redis.asyncio import Redis

from tests.redis_support import REDIS_URL, require_redis

# No per-example deadline anywhere: these machines are shared and noisy, and a slow example
# is not a failure (speed is measured by the benchmarks in bench/, never by tests). 150
# examples by default, what every property test without its own budget ran with before
# (a profile one module loaded at import time used to set this for all of them).
settings.register_profile("suite", max_examples=150, deadline=None)
settings.load_profile("suite")


@pytest.fixture
async def redis_raw() -> AsyncIterator[Redis]:
    await require_redis()
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    # on a private loop in a thread of its own, as tests/component/conftest.py's
    # session fixtures do: no event loop of the test's is touched
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(require_redis())).result()
    return REDIS_URL
