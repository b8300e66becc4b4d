"""Every Redis client of the engine and the bridge comes from ``open_redis``.

No ``socket_timeout``: with one, redis-py sends each command through ``asyncio.wait_for``,
which on Python 3.11 loses a cancellation that arrives as the command's result lands
(``ivr_engine/stopping.py``): a task cancelled on its way through a command carried on, and
an engine worker never exited after SIGTERM. Every caller bounds its commands with
``asyncio.timeout`` instead (blocking reads with their own, longer deadline). No retries:
a failed command is the caller's to report, as its own "unavailable" error (``redis_guard``:
the deadline and that error around one block of commands).

A Redis URL carries its password (``redis://:PASSWORD@HOST:6379/0``, ``?password=``): it is
said in messages and logs only through ``redact``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ivr_engine.timeline.urls import RAW_IN_PASSWORD, redact

__all__ = ["REDIS_FAILURES", "open_redis", "redact", "redis_guard"]

# What a Redis command raises when Redis is down, slow or refusing it; TimeoutError is also
# what ``asyncio.timeout`` raises at its deadline.
REDIS_FAILURES = (RedisError, OSError, TimeoutError)


def open_redis(url: str, *, connect_timeout_s: float, decode_responses: bool = True) -> Redis:
    """``ValueError`` naming the URL without its password when redis-py refuses it, and
    saying why in words of ours: urllib's and redis-py's messages may quote a piece of the
    URL, which may be a piece of the password (one with a raw "/", "?" or "#" ends the
    userinfo early and becomes the "port")."""
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(
            f"Redis URL {redact(url)!r}: not a valid URL, or the port is not a number from 0 "
            f"to 65535 ({RAW_IN_PASSWORD}): use redis://:PASSWORD@HOST:6379/0"
        ) from None
    try:
        client: Redis = Redis.from_url(
            url,
            decode_responses=decode_responses,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=None,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError:
        raise ValueError(
            f"Redis URL {redact(url)!r}: refused by redis-py: the scheme must be redis://, "
            "rediss:// or unix://, and each ?option a valid value"
        ) from None
    return client


@asynccontextmanager
async def redis_guard(
    timeout_s: float,
    unavailable: type[Exception],
    what: str,
    *,
    failures: tuple[type[Exception], ...] = REDIS_FAILURES,
) -> AsyncIterator[None]:
    """The block under ``asyncio.timeout(timeout_s)``: a ``failures`` exception raised in it,
    or the deadline, becomes ``unavailable(f"{what} failed: {exc!r}")`` raised from it.

    Anything else passes through untouched. A cancellation stays ``CancelledError`` (a
    ``BaseException``, never in ``failures``; ``asyncio.timeout`` turns only its own cancel
    into ``TimeoutError``), so a task stopped in a command stops (``stopping.py``).
    """
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except failures as exc:
        raise unavailable(f"{what} failed: {exc!r}") from exc
