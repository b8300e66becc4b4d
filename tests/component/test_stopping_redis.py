"""Cancelling a task in the middle of a Redis command, against the real Redis server.

redis-py sends each command through ``asyncio.wait_for`` when the client has a
``socket_timeout``; on Python 3.11 that ``wait_for`` loses a cancellation that arrives as
the command's result lands (CPython gh-86296), so one ``cancel()`` can leave a loop
running: the engine worker that never exited after SIGTERM (its AMI device tracker was
reading pause notes). The engine's clients (``open_redis``) have no ``socket_timeout``, and
``cancel_and_wait`` cancels again until a task is done, whatever library it is stuck in."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from ivr_engine.agents import RedisAgentStateStore
from ivr_engine.agents.errors import UnknownAgent
from ivr_engine.contact_center.pause_notes import RedisPauseNotes
from ivr_engine.stopping import cancel_and_wait
from tests.redis_support import REDIS_URL

pytestmark = pytest.mark.usefixtures("redis_url")  # unreachable Redis fails every test here
TIMINGS = range(40)  # loop turns between the start and the cancel: every stage of a command
Command = Callable[[], Awaitable[object]]


async def _poll(command: Command, pause_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():  # the way out for a poller that lost its cancellation
        await command()
        if pause_s:
            await asyncio.sleep(pause_s)


async def _start(
    command: Command, turns: int, pause_s: float = 0.0, stop: asyncio.Event | None = None
) -> asyncio.Task[None]:
    task = asyncio.create_task(_poll(command, pause_s, stop or asyncio.Event()))
    for _ in range(turns):
        await asyncio.sleep(0)
    return task


async def _lost_cancels(command: Command, *, first_only: bool = False) -> list[int]:
    """The timings at which one ``cancel()`` left the poller running 0.3 s later."""
    lost = []
    for turns in TIMINGS:
        stop = asyncio.Event()
        task = await _start(command, turns, stop=stop)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.3)
        stop.set()
        await asyncio.wait({task})
        if not done:
            lost.append(turns)
            if first_only:
                break
    return lost


async def _unknown_agent(store: RedisAgentStateStore) -> None:
    with contextlib.suppress(UnknownAgent):
        await store.get("nobody")


async def test_the_engines_redis_clients_never_lose_a_cancellation() -> None:
    notes = RedisPauseNotes.from_url(REDIS_URL, prefix="ivr-test-stopping:")
    store = RedisAgentStateStore.from_url(REDIS_URL, prefix="ivr-test-stopping:")
    try:
        assert await _lost_cancels(lambda: notes.get("nobody")) == []
        assert await _lost_cancels(lambda: _unknown_agent(store)) == []
    finally:
        await notes.aclose()
        await store.aclose()


async def test_a_client_with_a_socket_timeout_loses_some_on_python_3_11() -> None:
    """Why ``open_redis`` sets none (a canary: if this fails on 3.11, redis-py no longer
    sends through ``wait_for``)."""
    client = Redis.from_url(REDIS_URL, socket_timeout=2.0)
    try:
        lost = await _lost_cancels(lambda: client.hget("ivr-test-stopping:h", "f"), first_only=True)
    finally:
        await client.aclose()
    if sys.version_info < (3, 12):
        assert lost, "no cancellation lost: redis-py or asyncio changed (see the docstring)"


async def test_cancel_and_wait_stops_a_poller_even_on_such_a_client() -> None:
    client = Redis.from_url(REDIS_URL, socket_timeout=2.0)
    try:
        for turns in range(0, 40, 2):
            task = await _start(lambda: client.hget("ivr-test-stopping:h", "f"), turns, 0.002)
            async with asyncio.timeout(5):
                await cancel_and_wait([task], recancel_every_s=0.02)
    finally:
        await client.aclose()
