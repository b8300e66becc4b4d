"""One contract for both event buses: in-process, and Redis Streams at 127.0.0.1:6379.

Each Redis case uses its own key prefix and deletes its keys afterwards. Leases and idle
times are short (hundreds of milliseconds) so crash recovery runs in about a second; tests
wait on a condition fed by the consumers, never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from crm_bridge.bus import (
    BusClosed,
    BusSettings,
    Delivery,
    EventBus,
    InMemoryEventBus,
    RedisEventBus,
    partition_for,
)
from tests.redis_support import REDIS_URL, delete_prefix, require_redis

FAST = BusSettings(partitions=4, lease_ms=1000, min_idle_ms=500, max_deliveries=3)
BLOCK_MS = 100
STREAM, GROUP = "calls", "timeline"


def events(count: int, keys: int = 10, start: int = 0, tag: str = "e") -> list[dict[str, Any]]:
    """``count`` events spread round-robin over ``keys`` calls, with a per-call ``seq``."""
    out = []
    for n in range(start, start + count):
        call = f"call-{n % keys}"
        out.append({"event_id": f"{tag}{n}", "partition_key": call, "seq": n // keys, "n": n})
    return out


@contextlib.asynccontextmanager
async def open_bus(kind: str, settings: BusSettings = FAST) -> AsyncIterator[EventBus]:
    if kind == "memory":
        memory = InMemoryEventBus(settings)
        try:
            yield memory
        finally:
            await memory.aclose()
        return
    await require_redis()
    prefix = f"test:bus-{uuid.uuid4().hex}:"
    redis_bus = RedisEventBus.from_url(REDIS_URL, settings, prefix=prefix)
    try:
        yield redis_bus
    finally:
        await redis_bus.aclose()
        await delete_prefix(prefix)


@pytest.fixture(params=["memory", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def bus(kind: str) -> AsyncIterator[EventBus]:
    async with open_bus(kind) as opened:
        yield opened


class Board:
    """What every consumer processed, in processing order, with a condition to wait on."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Delivery]] = []
        self.changed = asyncio.Condition()

    async def record(self, consumer: str, batch: Sequence[Delivery]) -> None:
        async with self.changed:
            self.log.extend((consumer, delivery) for delivery in batch)
            self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s), self.changed:
            await self.changed.wait_for(predicate)

    def ids(self, consumer: str | None = None) -> list[str]:
        return [d.event["event_id"] for who, d in self.log if consumer in (None, who)]


class Worker:
    """A consumer task: records each batch, then acks it, hangs (a crash), or skips the ack."""

    def __init__(
        self,
        bus: EventBus,
        name: str,
        board: Board,
        *,
        batch: int = 100,
        group: str = GROUP,
        hang_after: int | None = None,
        fail: Callable[[Delivery], bool] = lambda _: False,
        work_s: float = 0.0,
    ) -> None:
        self.bus, self.name, self.board, self.group = bus, name, board, group
        self.batch, self.hang_after, self.fail, self.work_s = batch, hang_after, fail, work_s
        self.batches: list[list[Delivery]] = []
        self.hung = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"bus-worker-{name}")

    async def _run(self) -> None:
        stream = self.bus.consume(
            STREAM, self.group, self.name, batch=self.batch, block_ms=BLOCK_MS
        )
        async with contextlib.aclosing(stream) as batches:
            async for batch in batches:
                self.batches.append(batch)
                if self.work_s:
                    await asyncio.sleep(self.work_s)  # simulated processing time
                await self.board.record(self.name, batch)
                if self.hang_after is not None and len(self.batches) >= self.hang_after:
                    self.hung.set()
                    await asyncio.Event().wait()  # stuck for ever: no ack, no heartbeat
                await self.bus.ack(d.id for d in batch if not self.fail(d))

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def workers(*started: Worker) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for worker in started:
            await worker.stop()


def assert_in_order_per_call(log: Sequence[tuple[str, Delivery]]) -> None:
    """First processings of each call's events come in publish (``seq``) order."""
    seen: set[str] = set()
    last: dict[str, int] = {}
    for _, delivery in log:
        event = delivery.event
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        key = event["partition_key"]
        assert event["seq"] > last.get(key, -1), f"{key}: seq {event['seq']} after {last[key]}"
        last[key] = event["seq"]


async def test_publish_consume_ack(bus: EventBus) -> None:
    published = events(30)
    await bus.publish(STREAM, published)
    board = Board()
    worker = Worker(bus, "c1", board)
    async with workers(worker):
        await board.wait_for(lambda: len(board.log) >= 30)
    got = {d.event["event_id"]: d for _, d in board.log}
    assert sorted(board.ids()) == sorted(e["event_id"] for e in published)
    for event in published:
        delivery = got[event["event_id"]]
        assert delivery.event == event and delivery.event is not event
        assert delivery.attempt == 1
        assert delivery.id.partition == partition_for(event["partition_key"], FAST.partitions)
    assert await bus.ack(got[e["event_id"]].id for e in published) == 0  # acked already


async def test_ack_counts_pending_entries(bus: EventBus) -> None:
    await bus.publish(STREAM, events(5))
    stream = bus.consume(STREAM, GROUP, "c1", batch=10, block_ms=BLOCK_MS)
    async with contextlib.aclosing(stream) as batches:
        got = await anext(batches)
        while len(got) < 5:
            got += await anext(batches)
        assert await bus.ack([]) == 0
        assert await bus.ack([got[0].id, got[0].id]) == 1
        assert await bus.ack(d.id for d in got) == 4


@pytest.mark.parametrize("batch", [1, 3, 7, 100])
async def test_batches_never_exceed_the_batch_size(bus: EventBus, batch: int) -> None:
    await bus.publish(STREAM, events(120, keys=9))
    board = Board()
    worker = Worker(bus, "c1", board, batch=batch)
    async with workers(worker):
        await board.wait_for(lambda: len(board.log) >= 120)
    assert sorted(board.ids()) == sorted(e["event_id"] for e in events(120, keys=9))
    assert all(1 <= len(b) <= batch for b in worker.batches)
    if batch == 100:
        assert len(worker.batches) < 120 / 5  # really batched: 4 partitions, 25 per read


async def test_each_group_gets_every_event_and_history(bus: EventBus) -> None:
    await bus.publish(STREAM, events(20))  # before either group exists
    board = Board()
    first = Worker(bus, "a", board, group="timeline")
    second = Worker(bus, "a", board, group="screenpop")  # same consumer name, other group
    async with workers(first, second):
        await bus.publish(STREAM, events(20, start=20))
        await board.wait_for(lambda: len(board.log) >= 80)
    by_group: defaultdict[str, list[str]] = defaultdict(list)
    for _, d in board.log:
        by_group[d.id.group].append(d.event["event_id"])
    expected = sorted(e["event_id"] for e in events(40))
    assert {group: sorted(ids) for group, ids in by_group.items()} == {
        "timeline": expected,
        "screenpop": expected,
    }


async def test_unacked_batch_is_redelivered_before_later_events(bus: EventBus) -> None:
    """One call (one partition): a batch that is not acked blocks the partition, comes
    again after ``min_idle_ms`` with ``attempt`` 2, and only then do later events follow."""
    await bus.publish(STREAM, events(3, keys=1))
    board = Board()
    failed_once: set[str] = set()

    def fail_first_time(d: Delivery) -> bool:
        if d.event["event_id"] in failed_once:
            return False
        failed_once.add(d.event["event_id"])
        return True

    worker = Worker(bus, "c1", board, fail=fail_first_time)
    async with workers(worker):
        await board.wait_for(lambda: len(board.log) >= 3)
        await bus.publish(STREAM, events(2, keys=1, start=3))
        await board.wait_for(lambda: len(board.log) >= 10)
    ids = [d.event["event_id"] for _, d in board.log]
    attempts = [d.attempt for _, d in board.log]
    assert ids == ["e0", "e1", "e2", "e0", "e1", "e2", "e3", "e4", "e3", "e4"]
    assert attempts == [1, 1, 1, 2, 2, 2, 1, 1, 2, 2]
    assert await bus.dead_letters(STREAM) == []


async def test_hung_consumer_partitions_and_pending_move_to_the_other(bus: EventBus) -> None:
    published = events(400, keys=40)
    board = Board()
    stuck = Worker(bus, "stuck", board, batch=20, hang_after=2)
    healthy = Worker(bus, "healthy", board, batch=20)
    async with workers(stuck, healthy):
        await bus.publish(STREAM, published[:200])
        await stuck.hung.wait()
        await bus.publish(STREAM, published[200:])
        unacked = {d.event["event_id"] for d in stuck.batches[-1]}
        await board.wait_for(
            lambda: (
                set(board.ids("healthy")) | set(board.ids("stuck"))
                >= {e["event_id"] for e in published}
                and unacked <= set(board.ids("healthy"))
            )
        )
    stuck_ids, healthy_ids = board.ids("stuck"), board.ids("healthy")
    assert len(set(healthy_ids)) == len(healthy_ids)  # the survivor never repeats itself
    assert set(stuck_ids) & set(healthy_ids) == unacked  # only the hung batch twice
    retried = [d for who, d in board.log if who == "healthy" and d.event["event_id"] in unacked]
    assert {d.attempt for d in retried} == {2}
    assert_in_order_per_call(board.log)


async def test_closed_consumer_leaves_at_once_and_its_batch_comes_again(bus: EventBus) -> None:
    await bus.publish(STREAM, events(10, keys=1))
    first = bus.consume(STREAM, GROUP, "first", batch=4, block_ms=BLOCK_MS)
    async with contextlib.aclosing(first) as batches:
        taken = await anext(batches)  # not acked
    board = Board()
    second = Worker(bus, "second", board)
    async with workers(second):
        await board.wait_for(lambda: len(board.log) >= 10)
    assert board.ids()[: len(taken)] == [d.event["event_id"] for d in taken]
    assert [d.attempt for _, d in board.log] == [2] * len(taken) + [1] * (10 - len(taken))


async def test_poison_event_is_dead_lettered_after_max_deliveries(bus: EventBus) -> None:
    published = events(6, keys=2)  # e0 e2 e4 on call-0, e1 e3 e5 on call-1
    await bus.publish(STREAM, published[:4])
    board = Board()
    worker = Worker(bus, "c1", board, fail=lambda d: d.event["event_id"] == "e2")
    async with workers(worker):
        await board.wait_for(lambda: "e2" in board.ids())
        await bus.publish(STREAM, published[4:])  # e4 waits behind the failing e2
        await board.wait_for(lambda: {"e4", "e5"} <= set(board.ids()))
        dead = await bus.dead_letters(STREAM)
    assert [(d.event["event_id"], d.group, d.deliveries) for d in dead] == [
        ("e2", GROUP, FAST.max_deliveries)
    ]
    assert dead[0].event == published[2]
    assert dead[0].partition == partition_for("call-0", FAST.partitions)
    poison = [d.attempt for _, d in board.log if d.event["event_id"] == "e2"]
    assert poison == list(range(1, FAST.max_deliveries + 1))
    call_0 = [d.event["event_id"] for _, d in board.log if d.event["partition_key"] == "call-0"]
    assert call_0 == ["e0"] + ["e2"] * FAST.max_deliveries + ["e4"]


async def test_per_call_order_across_consumers_joining_midway(bus: EventBus) -> None:
    published = events(1200, keys=60)
    board = Board()
    first = Worker(bus, "first", board, batch=50, work_s=0.002)
    async with workers(first):
        await bus.publish(STREAM, published[:600])
        await board.wait_for(lambda: len(board.log) >= 100)
        second = Worker(bus, "second", board, batch=50, work_s=0.002)
        async with workers(second):
            for start in range(600, 1200, 100):
                await bus.publish(STREAM, published[start : start + 100])
            await board.wait_for(lambda: len(board.log) >= 1200)
    assert sorted(board.ids()) == sorted(e["event_id"] for e in published)  # exactly once
    assert board.ids("first") and board.ids("second")
    assert_in_order_per_call(board.log)
    owners: defaultdict[str, list[str]] = defaultdict(list)
    for who, d in board.log:
        if not owners[d.event["partition_key"]] or owners[d.event["partition_key"]][-1] != who:
            owners[d.event["partition_key"]].append(who)
    assert all(len(hands) <= 2 for hands in owners.values())  # handed over at most once


async def test_trimming_keeps_about_maxlen_per_partition(kind: str) -> None:
    settings = BusSettings(partitions=1, maxlen=100, lease_ms=1000, min_idle_ms=500)
    async with open_bus(kind, settings) as small:
        await small.publish(STREAM, events(1000, keys=5))
        board = Board()
        worker = Worker(small, "c1", board)
        async with workers(worker):
            await board.wait_for(lambda: "e999" in board.ids())
    kept = board.ids()
    assert 100 <= len(kept) < 1000  # Redis trims whole nodes (MAXLEN ~): a little more
    assert kept == [f"e{n}" for n in range(1000 - len(kept), 1000)]


async def test_invalid_input_is_refused_before_anything_is_sent(bus: EventBus) -> None:
    good = events(1)[0]
    with pytest.raises(ValueError, match="event_id"):
        await bus.publish(STREAM, [good, {"partition_key": "call-1"}])
    with pytest.raises(ValueError, match="partition_key"):
        await bus.publish(STREAM, [{"event_id": "x", "partition_key": ""}])
    with pytest.raises(TypeError):
        await bus.publish(STREAM, [{**good, "when": object()}])
    with pytest.raises(ValueError, match="stream name"):
        await bus.publish("calls:{x}", [good])
    for bad_args in ({"batch": 0}, {"block_ms": FAST.lease_ms}):
        with pytest.raises(ValueError):
            await anext(bus.consume(STREAM, GROUP, "c1", **bad_args))
    with pytest.raises(ValueError, match="consumer name"):
        await anext(bus.consume(STREAM, GROUP, "bad name", block_ms=BLOCK_MS))
    await bus.publish(STREAM, [good])
    board = Board()
    worker = Worker(bus, "c1", board)
    async with workers(worker):
        await board.wait_for(lambda: len(board.log) >= 1)
    assert board.ids() == [good["event_id"]]  # nothing from the refused batches


async def test_closed_bus_refuses_everything(bus: EventBus) -> None:
    await bus.publish(STREAM, events(2))
    stream = bus.consume(STREAM, GROUP, "c1", batch=10, block_ms=BLOCK_MS)
    batch = await anext(stream)
    await bus.aclose()
    with pytest.raises(BusClosed):
        await bus.publish(STREAM, events(1))
    with pytest.raises(BusClosed):
        await bus.ack(d.id for d in batch)
    with pytest.raises(BusClosed):
        await bus.dead_letters(STREAM)
    with pytest.raises(BusClosed):
        await anext(stream)
    with pytest.raises(BusClosed):
        await anext(bus.consume(STREAM, GROUP, "c2", block_ms=BLOCK_MS))


async def test_close_wakes_a_waiting_consumer_at_once(kind: str) -> None:
    settings = BusSettings(partitions=2, lease_ms=30_000, min_idle_ms=10_000)
    async with open_bus(kind, settings) as slow:
        waiting = slow.consume(STREAM, GROUP, "c1", block_ms=10_000)

        async def first_batch() -> list[Delivery]:
            return await anext(waiting)

        reader = asyncio.create_task(first_batch())
        await asyncio.sleep(0.2)  # let it park in its 10 s wait (if not, it must fail as fast)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await slow.aclose()
        with pytest.raises(BusClosed):
            async with asyncio.timeout(2):
                await reader
        assert loop.time() - started < 2
        await waiting.aclose()
