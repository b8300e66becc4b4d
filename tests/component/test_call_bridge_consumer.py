"""The consumer's edge cases on the in-process bus and a real SQLite timeline: an entry that
is not a call event is left to the bus's dead letters (the good ones are written), and a
customer that vanished between resolution and write is resolved again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from crm_bridge.bus import BusSettings, InMemoryEventBus
from crm_bridge.calls import CustomerResolver, TimelineConsumer
from ivr_engine.ports import CustomerWrite, Identity
from ivr_engine.timeline import Timeline, open_timeline
from tests.component.test_call_bridge_fakes import Switch
from tests.component.test_call_bridge_normalise import run

FAST = BusSettings(partitions=2, lease_ms=600, min_idle_ms=200, max_deliveries=2)


class ForgetfulWriter:
    """Reports the first customer it sees as missing once (deleted since resolution)."""

    def __init__(self, timeline: Timeline) -> None:
        self.inner = timeline.writer
        self.hidden: set[str] = set()

    async def write(self, batch: Sequence[CustomerWrite]) -> set[str]:
        if not self.hidden and batch:
            self.hidden.add(batch[0].customer_id)
            return {batch[0].customer_id} | await self.inner.write(batch[1:])
        return await self.inner.write(batch)


@contextlib.asynccontextmanager
async def consuming(
    bus: InMemoryEventBus, timeline: Timeline, writer: object
) -> AsyncIterator[TimelineConsumer]:
    consumer = TimelineConsumer(
        bus, "calls", "timeline", "c1", CustomerResolver(timeline.store), writer,  # type: ignore[arg-type]
        block_ms=50,
    )  # fmt: skip
    task = asyncio.create_task(consumer.run())
    try:
        yield consumer
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
