"""Throughput of the event bus: publish (pipelined) and consume + ack, in events/s.

    .venv/bin/python bench/bus_throughput.py
    .venv/bin/python bench/bus_throughput.py --events 200000 --redis-url redis://127.0.0.1:6379/0

For each implementation (in-process, Redis Streams) and each publish batch size, publishes
``--events`` call events (about 230 bytes of JSON each, 500 calls, 8 partitions) from one
task, then drains them with one consumer (``--consume-batch``) that acks every batch, and
with two consumers of the same group in one process. Timed with ``perf_counter`` around
the whole publish and the whole drain; each cell is the best of ``--repeat`` runs (the
machine is shared, so the best run is the one least disturbed). The Redis keys use a
unique prefix and are deleted afterwards. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis.asyncio import Redis

from crm_bridge.bus import BusSettings, EventBus, InMemoryEventBus, RedisEventBus

STREAM, GROUP = "calls", "bench"


@dataclass(frozen=True)
class Row:
    implementation: str
    publish_batch: int
    events: int
    publish_per_s: float
    consume_batch: int
    consume_per_s: float
    consume_two_per_s: float


def make_events(count: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{tag}-{n}",
            "partition_key": f"1712345678.{n % 500}",
            "type": "MenuPresented",
            "at": "2025-03-10T12:00:00.123456+00:00",
            "caller": "+15555550123",
            "menu": ["billing", "support", "sales", "moving", "retention"],
            "reasons": {"billing": "5 of last 6 contacts, latest 2 days ago"},
        }
        for n in range(count)
    ]


async def publish_all(
    bus: EventBus, stream: str, events: list[dict[str, Any]], batch: int
) -> float:
    started = perf_counter()
    for start in range(0, len(events), batch):
        await bus.publish(stream, events[start : start + batch])
    return len(events) / (perf_counter() - started)


async def drain(bus: EventBus, stream: str, total: int, consumers: int, batch: int) -> float:
    """Consume and ack until ``total`` events were processed; events/s."""
    done = asyncio.Event()
    seen = 0

    async def one(name: str) -> None:
        nonlocal seen
        batches = bus.consume(stream, GROUP, name, batch=batch, block_ms=100)
        async with contextlib.aclosing(batches):
            async for deliveries in batches:
                await bus.ack(d.id for d in deliveries)
                seen += len(deliveries)
                if seen >= total:
                    done.set()

    started = perf_counter()
    tasks = [asyncio.create_task(one(f"c{n}")) for n in range(consumers)]
    try:
        async with asyncio.timeout(300):
            await done.wait()
        return total / (perf_counter() - started)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def measure(
    name: str, open_bus: Callable[[], EventBus], count: int, publish_batch: int, consume_batch: int
) -> Row:
    bus = open_bus()
    try:
        events = make_events(count, uuid.uuid4().hex[:8])
        stream, other = f"calls-{uuid.uuid4().hex[:8]}", f"calls-{uuid.uuid4().hex[:8]}"
        await publish_all(bus, "warmup", events[:1000], 500)
        publish = await publish_all(bus, stream, events, publish_batch)
        one = await drain(bus, stream, count, 1, consume_batch)
        await publish_all(bus, other, events, 1000)
        two = await drain(bus, other, count, 2, consume_batch)
    finally:
        await bus.aclose()
    return Row(name, publish_batch, count, publish, consume_batch, one, two)


def best(rows: list[Row]) -> Row:
    return replace(
        rows[0],
        publish_per_s=max(r.publish_per_s for r in rows),
        consume_per_s=max(r.consume_per_s for r in rows),
        consume_two_per_s=max(r.consume_two_per_s for r in rows),
    )


async def delete_prefix(url: str, prefix: str) -> None:
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


async def run(args: argparse.Namespace) -> list[Row]:
    settings = BusSettings(partitions=8, maxlen=max(args.events * 2, 100_000))
    prefix = f"bench:bus-{uuid.uuid4().hex}:"
    buses: dict[str, Callable[[], EventBus]] = {
        "in-process": lambda: InMemoryEventBus(settings),
        "Redis Streams": lambda: RedisEventBus.from_url(args.redis_url, settings, prefix=prefix),
    }
    rows = []
    try:
        for publish_batch in args.publish_batch:
            count = min(args.events, 5_000) if publish_batch == 1 else args.events
            for name, open_bus in buses.items():
                runs = []
                for _ in range(args.repeat):
                    runs.append(
                        await measure(name, open_bus, count, publish_batch, args.consume_batch)
                    )
                    await delete_prefix(args.redis_url, prefix)
                rows.append(best(runs))
    finally:
        await delete_prefix(args.redis_url, prefix)
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| bus | publish batch | events | publish ev/s | consume batch "
        "| consume+ack ev/s (1 consumer) | consume+ack ev/s (2 consumers) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.implementation} | {r.publish_batch} | {r.events:,} | {r.publish_per_s:,.0f} "
            f"| {r.consume_batch} | {r.consume_per_s:,.0f} | {r.consume_two_per_s:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--publish-batch", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--consume-batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    print(table(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
