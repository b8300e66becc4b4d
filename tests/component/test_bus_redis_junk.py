"""An entry in a partition that is not an event (written by something else) is dead-lettered
as soon as a consumer reads it, read or claimed, so the partition's later events are not held
behind it (they waited ``max_deliveries`` times ``min_idle_ms``, ~75 s by default, while
it was claimed again and again). A consumer that stops between reading it and
dead-lettering it loses nothing: it is still pending and the claims deal with it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from crm_bridge.bus import BusSettings, BusUnavailable, Delivery, RedisEventBus
from crm_bridge.bus.model import partition_for
from tests.redis_support import REDIS_URL, delete_prefix, require_redis

STREAM, GROUP = "calls", "timeline"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    await require_redis()
    name = f"test:bus-junk-{uuid.uuid4().hex}:"
    yield name
    await delete_prefix(name)


def event(event_id: str, key: str = "call-1") -> dict[str, Any]:
    return {"event_id": event_id, "partition_key": key}


def partition_key(prefix: str, settings: BusSettings, key: str = "call-1") -> str:
    return f"{prefix}{{{STREAM}}}:p{partition_for(key, settings.partitions)}"


async def consume_until(
    bus: RedisEventBus, want: set[str], timeout_s: float, consumer: str = "c1"
) -> list[Delivery]:
    """Every delivery (each batch acknowledged) until all of ``want`` arrived."""
    got: list[Delivery] = []
    batches = bus.consume(STREAM, GROUP, consumer, block_ms=100)
    async with asyncio.timeout(timeout_s), contextlib.aclosing(batches):
        async for deliveries in batches:
            got += deliveries
            await bus.ack(d.id for d in deliveries)
            if want <= {d.event["event_id"] for d in got}:
                break
    return got


def seen(got: list[Delivery]) -> list[tuple[str, int]]:
    return [(d.event["event_id"], d.attempt) for d in got]


async def test_a_junk_entry_is_dead_lettered_when_read_and_later_events_follow_at_once(
    prefix: str, redis_raw: Redis
) -> None:
    """Default settings (min_idle_ms 15 s, max_deliveries 5): e2 after the junk entry used
    to come ~75 s later (the partition was served by claims until the entry was dead-lettered)."""
    settings = BusSettings()
    bus = RedisEventBus.from_url(REDIS_URL, settings, prefix=prefix)
    try:
        await bus.publish(STREAM, [event("e1")])
        junk = await redis_raw.xadd(partition_key(prefix, settings), {b"e": b"not json"})
        await bus.publish(STREAM, [event("e2")])
        loop = asyncio.get_running_loop()
        started = loop.time()
        got = await consume_until(bus, {"e1", "e2"}, timeout_s=5)
        (dead,) = await bus.dead_letters(STREAM)  # at once, not after 5 claims
        await bus.publish(STREAM, [event("e3")])  # the partition is read again, not claimed
        got += await consume_until(bus, {"e3"}, timeout_s=5)
        assert loop.time() - started < 3
        assert seen(got) == [("e1", 1), ("e2", 1), ("e3", 1)]
        assert dead.event == {"undecodable": "not json"} and dead.entry == junk.decode()
        assert (dead.group, dead.partition, dead.deliveries) == (
            GROUP,
            partition_for("call-1", settings.partitions),
            1,
        )
        assert (await redis_raw.xpending(partition_key(prefix, settings), GROUP))["pending"] == 0
    finally:
        await bus.aclose()


async def test_junk_in_several_partitions_of_one_read_is_set_aside_in_one_go(
    prefix: str, redis_raw: Redis
) -> None:
    """Entries of two calls in two partitions, junk in both (no ``e`` field; not UTF-8):
    every event once and in its call's order, both junk entries dead-lettered with their
    own partition, nothing left pending."""
    settings = BusSettings(partitions=2)
    keys = ["a", "d"]
    assert partition_for("a", 2) != partition_for("d", 2)
    bus = RedisEventBus.from_url(REDIS_URL, settings, prefix=prefix)
    try:
        await bus.publish(STREAM, [event("a1", "a"), event("d1", "d")])
        await redis_raw.xadd(partition_key(prefix, settings, "a"), {b"x": b"1"})
        await redis_raw.xadd(partition_key(prefix, settings, "d"), {b"e": b"\xff\xfe"})
        await bus.publish(STREAM, [event("a2", "a"), event("d2", "d")])
        got = await consume_until(bus, {"a1", "a2", "d1", "d2"}, timeout_s=5)
        for key in keys:
            mine = [(i, n) for i, n in seen(got) if i.startswith(key)]
            assert mine == [(f"{key}1", 1), (f"{key}2", 1)]
        dead = await bus.dead_letters(STREAM)
        shown = {d.partition: (d.event, d.deliveries) for d in dead}
        assert shown == {
            partition_for("a", 2): ({"undecodable": "1"}, 1),
            partition_for("d", 2): ({"undecodable": "\\xff\\xfe"}, 1),
        }
        for key in keys:
            pending = await redis_raw.xpending(partition_key(prefix, settings, key), GROUP)
            assert pending["pending"] == 0
    finally:
        await bus.aclose()


async def test_a_consumer_that_stops_after_reading_a_junk_entry_loses_nothing(
    prefix: str, redis_raw: Redis
) -> None:
    """A consumer read e1, the junk entry and e2, and died before it dead-lettered the entry
    (or acknowledged anything). The next owner claims all three after min_idle_ms: e1 and
    e2 come again (attempt 2), the entry is dead-lettered at that claim (2 deliveries), and
    e3 follows at once; before, the entry was claimed until max_deliveries (5 s here)."""
    settings = BusSettings(partitions=1, lease_ms=3000, min_idle_ms=1000, max_deliveries=5)
    bus = RedisEventBus.from_url(REDIS_URL, settings, prefix=prefix)
    stream = partition_key(prefix, settings)
    try:
        await bus.publish(STREAM, [event("e1")])
        junk = await redis_raw.xadd(stream, {b"e": b"[1]"})
        await bus.publish(STREAM, [event("e2")])
        await redis_raw.xgroup_create(stream, GROUP, id="0")
        read = await redis_raw.xreadgroup(GROUP, "gone", {stream: ">"}, count=10)
        assert len(read[0][1]) == 3  # read, never dead-lettered nor acknowledged
        await bus.publish(STREAM, [event("e3")])
        loop = asyncio.get_running_loop()
        started = loop.time()
        got = await consume_until(bus, {"e1", "e2", "e3"}, timeout_s=8)
        assert loop.time() - started < 3
        assert seen(got) == [("e1", 2), ("e2", 2), ("e3", 1)]
        (dead,) = await bus.dead_letters(STREAM)
        assert (dead.event, dead.entry, dead.deliveries) == (
            {"undecodable": "[1]"},
            junk.decode(),
            2,
        )
        assert (await redis_raw.xpending(stream, GROUP))["pending"] == 0
    finally:
        await bus.aclose()


async def test_a_failed_dead_lettering_leaves_the_read_pending_for_the_claims(
    prefix: str, redis_raw: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis fails right when the consumer dead-letters the entry it read: ``consume``
    raises ``BusUnavailable`` and hands over none of that read; all of it is still pending,
    and the restarted consumer gets e1 and e2 again from the claims, sets the entry aside."""
    settings = BusSettings(partitions=1, lease_ms=1500, min_idle_ms=300, max_deliveries=5)
    bus = RedisEventBus.from_url(REDIS_URL, settings, prefix=prefix)
    try:
        await bus.publish(STREAM, [event("e1")])
        await redis_raw.xadd(partition_key(prefix, settings), {b"e": b"junk"})
        await bus.publish(STREAM, [event("e2")])
        script = bus._log.scripts["dead_letter"]

        async def fail(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("Redis went away")

        monkeypatch.setattr(script, "sha", "0" * 40)
        monkeypatch.setattr(bus._log.client, "script_load", fail)
        with pytest.raises(BusUnavailable):
            await consume_until(bus, {"e2"}, timeout_s=5)
        monkeypatch.undo()
        assert (await redis_raw.xpending(partition_key(prefix, settings), GROUP))["pending"] == 3
        assert await bus.dead_letters(STREAM) == []
        got = await consume_until(bus, {"e1", "e2"}, timeout_s=5)
        assert seen(got) == [("e1", 2), ("e2", 2)]
        (dead,) = await bus.dead_letters(STREAM)
        assert dead.event == {"undecodable": "junk"} and dead.deliveries == 2
    finally:
        await bus.aclose()
