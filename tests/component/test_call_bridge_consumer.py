"""The consumer's edge cases on the in-process bus and a real SQLite timeline: an entry that
is not a call event is left to the bus's dead letters (the good ones are written), and a
customer that vanished between resolution and write is resolved again. On the Redis bus and
a PostgreSQL timeline: an entry something else wrote that is not UTF-8 is set aside the same
way, and the consumer never stalls on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis

from crm_bridge.bus import BusSettings, Delivery, DeliveryId, InMemoryEventBus, RedisEventBus
from crm_bridge.bus.model import partition_for
from crm_bridge.calls import CustomerResolver, TimelineConsumer
from ivr_engine.ports import Identity
from ivr_engine.timeline import Timeline, open_timeline
from ivr_engine.timeline.fast_rows import EventRow
from tests.component.test_call_bridge_fakes import Switch
from tests.component.test_call_bridge_normalise import run
from tests.redis_support import REDIS_URL, delete_prefix, require_redis

FAST = BusSettings(partitions=2, lease_ms=600, min_idle_ms=200, max_deliveries=2)


class ForgetfulWriter:
    """Reports the first customer it sees as missing once (deleted since resolution)."""

    def __init__(self, timeline: Timeline) -> None:
        self.inner = timeline.writer
        self.hidden: set[str] = set()

    async def write_rows(self, rows: Sequence[EventRow]) -> set[str]:
        if not self.hidden and rows:
            gone = rows[0].customer_id
            self.hidden.add(gone)
            return {gone} | await self.inner.write_rows([r for r in rows if r.customer_id != gone])
        return await self.inner.write_rows(rows)


@contextlib.asynccontextmanager
async def consuming(
    bus: InMemoryEventBus | RedisEventBus, timeline: Timeline, writer: object
) -> AsyncIterator[TimelineConsumer]:
    consumer = TimelineConsumer(
        bus, "calls", "timeline", "c1", CustomerResolver(timeline.store), writer,  # type: ignore[arg-type]
        block_ms=50,
    )  # fmt: skip
    async with task_of(consumer.run()):
        yield consumer


@contextlib.asynccontextmanager
async def task_of(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """``work`` as a task while the block runs; cancelled and awaited after it."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_foreign_entries_are_dead_lettered_and_vanished_customers_resolved_again(
    sqlite_url: str, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    switch = Switch()
    switch.agent_call(phone)
    events = [e.to_bus() for e in run(switch.take_events())]
    bus = InMemoryEventBus(FAST)
    timeline = await open_timeline(sqlite_url, migrate=False)
    writer = ForgetfulWriter(timeline)
    try:
        async with consuming(bus, timeline, writer) as consumer:
            foreign = {"event_id": "chat-1", "partition_key": events[0]["partition_key"]}
            await bus.publish("calls", [*events[:2], foreign, *events[2:]])
            await consumer.wait_committed(len(events), 10)
            for _ in range(200):  # redelivered after min_idle_ms, then set aside
                if await bus.dead_letters("calls"):
                    break
                await asyncio.sleep(0.05)
        (dead,) = await bus.dead_letters("calls")
        assert dead.event == foreign and dead.deliveries == 2
        assert writer.hidden and consumer.committed == len(events)
        (customer,) = await timeline.store.find_customers(Identity("phone", phone))
        page = await timeline.store.timeline(customer.customer_id)
        assert sorted(e.event_id for e in page.events) == sorted(e["event_id"] for e in events)
    finally:
        await bus.aclose()
        await timeline.close()


@pytest.mark.postgres
async def test_a_non_utf8_entry_on_the_redis_bus_is_set_aside_and_every_event_written(
    pg_url: str, new_phone: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    """Before: redis-py failed every read returning the entry (``BusUnavailable``, the
    consumer backed off and read again, forever), and the claims dead-lettered the call's
    good events with it: none reached the timeline."""
    await require_redis()
    phone = new_phone()
    switch = Switch(prefix=uuid.uuid4().hex[:8])  # ids of its own: pg_url is the session's
    switch.agent_call(phone)
    events = [e.to_bus() for e in run(switch.take_events())]
    prefix = f"test:bus-{uuid.uuid4().hex}:"
    bus = RedisEventBus.from_url(REDIS_URL, FAST, prefix=prefix)
    raw = Redis.from_url(REDIS_URL)
    timeline = await open_timeline(pg_url, migrate=False)
    try:
        await bus.publish("calls", events[:2])  # before the consumer: one read returns all
        key = events[0]["partition_key"]
        partition = f"{prefix}{{calls}}:p{partition_for(key, FAST.partitions)}"
        await raw.xadd(partition, {b"e": b'{"event_id":"\xff","partition_key":"x"}'})
        await bus.publish("calls", events[2:])
        async with consuming(bus, timeline, timeline.writer) as consumer:
            await consumer.wait_committed(len(events), 10)
            (dead,) = await bus.dead_letters("calls")  # set aside when read
            assert consumer.committed == len(events)  # each delivered once
        assert dead.event == {"undecodable": '{"event_id":"\\xff","partition_key":"x"}'}
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert not [m for m in said if "bus unavailable" in m], said  # never a failed read
        # dead-lettered by the read itself; it used to be claimed until max_deliveries
        # ("1 entries dead-lettered" from the claims), the call's later events waiting
        assert any("skipped 1 entries that are not events, dead-lettered 1" in m for m in said)
        assert not [m for m in said if "entries dead-lettered (p" in m], said
        (customer,) = await timeline.store.find_customers(Identity("phone", phone))
        page = await timeline.store.timeline(customer.customer_id)
        assert sorted(e.event_id for e in page.events) == sorted(e["event_id"] for e in events)
    finally:
        await timeline.close()
        await raw.aclose()
        await bus.aclose()
        await delete_prefix(prefix)


class ScriptedBus:
    """Hands out the given batches, then nothing; records what was acknowledged."""

    def __init__(self, batches: list[list[Delivery]]) -> None:
        self.batches = batches
        self.acked: list[DeliveryId] = []

    async def consume(self, *args: object, **kwargs: object) -> AsyncIterator[list[Delivery]]:
        for batch in self.batches:
            yield batch
        await asyncio.Event().wait()

    async def ack(self, ids: Iterable[DeliveryId]) -> int:
        self.acked += ids
        return 0


class RowsKept:
    def __init__(self) -> None:
        self.batches: list[int] = []

    async def write_rows(self, rows: Sequence[EventRow]) -> set[str]:
        self.batches.append(len(rows))
        return set()


async def test_after_a_small_batch_the_consumer_lingers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Micro-batches: after a batch under half ``batch`` the consumer reads again only
    ``linger_s`` after its last read (so the next one fills); after a larger one (a backlog)
    at once."""
    events = [e.to_bus() for e in run(_calls(4).take_events())]
    deliveries = [
        Delivery(DeliveryId("calls", "timeline", 0, f"{n}-0"), e) for n, e in enumerate(events)
    ]
    small, large = deliveries[:4], deliveries[4:9]
    bus = ScriptedBus([large, small, large, small])
    resolver = CustomerResolver(None, directory=_Directory())  # type: ignore[arg-type]
    writer = RowsKept()
    consumer = TimelineConsumer(
        bus,
        "calls",
        "timeline",
        "c1",
        resolver,
        writer,
        batch=10,
        linger_s=30,  # type: ignore[arg-type]
    )
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        pauses.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    async with task_of(consumer.run()):
        await consumer.wait_committed(18, 10)
    assert writer.batches == [5, 4, 5, 4] and len(bus.acked) == 18
    assert len(pauses) == 2 and all(0 < p <= 30 for p in pauses)  # after the small ones only


def _calls(n: int) -> Switch:
    switch = Switch()
    for k in range(n):
        switch.agent_call(f"+1555777{k:04d}")
    return switch


class _Directory:
    async def phone_owners(self, phones: Sequence[str]) -> dict[str, list[str]]:
        return {}

    async def create_customers(
        self, phones: Sequence[str | None], keys: Sequence[str | None] = ()
    ) -> list[str]:
        return [f"c-{phone}" for phone in phones]
