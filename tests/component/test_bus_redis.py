"""Redis-only behaviour of the event bus: outages are quick typed errors, the partition
count is guarded, and consumers clean up their ownership keys."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from crm_bridge.bus import (
    BusSettings,
    BusUnavailable,
    DeliveryId,
    PartitionCountMismatch,
    RedisEventBus,
    open_event_bus,
)
from crm_bridge.bus.model import partition_for
from crm_bridge.bus.redis_bus import pack_entries
from ivr_engine.domain.errors import IvrEngineError
from tests.component.test_bus_contract import BLOCK_MS, FAST, GROUP, STREAM, events
from tests.redis_support import REDIS_URL, delete_prefix, require_redis


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers (a hung Redis)."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


class Proxy:
    """A TCP relay to the real Redis that can be cut, as if Redis went down mid-stream."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = urlsplit(REDIS_URL)
        up_reader, up_writer = await asyncio.open_connection(upstream.hostname, upstream.port)
        self.writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    await require_redis()
    name = f"test:bus-{uuid.uuid4().hex}:"
    yield name
    await delete_prefix(name)


async def assert_unavailable_quickly(bus: RedisEventBus, within_s: float) -> None:
    loop = asyncio.get_running_loop()
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "publish": lambda: bus.publish(STREAM, events(3)),
        "consume": lambda: anext(bus.consume(STREAM, GROUP, "c1", block_ms=BLOCK_MS)),
        "ack": lambda: bus.ack([DeliveryId(STREAM, GROUP, 0, "1-0")]),
        "dead_letters": lambda: bus.dead_letters(STREAM),
    }
    for name, call in calls.items():
        started = loop.time()
        with pytest.raises(BusUnavailable) as caught:
            async with asyncio.timeout(within_s + 5):  # a hang fails here, not in CI's timeout
                await call()
        assert loop.time() - started < within_s, name
        assert isinstance(caught.value, IvrEngineError)
        assert "Redis" in str(caught.value)


async def test_redis_down_is_bus_unavailable_at_once() -> None:
    bus = RedisEventBus.from_url(f"redis://127.0.0.1:{unused_port()}/0", FAST)
    try:
        await assert_unavailable_quickly(bus, within_s=1.0)
    finally:
        await bus.aclose()


async def test_redis_that_never_answers_is_bus_unavailable_within_the_timeout() -> None:
    async with silent_server() as port:
        bus = RedisEventBus.from_url(f"redis://127.0.0.1:{port}/0", FAST, timeout_s=0.3)
        try:
            await assert_unavailable_quickly(bus, within_s=1.0)
        finally:
            await bus.aclose()


async def test_open_event_bus_picks_the_implementation(prefix: str) -> None:
    memory = open_event_bus(None)
    redis_bus = open_event_bus(REDIS_URL, FAST, prefix=prefix)
    try:
        assert type(memory).__name__ == "InMemoryEventBus"
        assert isinstance(redis_bus, RedisEventBus)
    finally:
        await memory.aclose()
        await redis_bus.aclose()
    with pytest.raises(IvrEngineError, match="memory://"):
        open_event_bus("kafka://broker:9092")


async def test_a_different_partition_count_is_refused(prefix: str) -> None:
    eight = RedisEventBus.from_url(REDIS_URL, BusSettings(partitions=8), prefix=prefix)
    four = RedisEventBus.from_url(REDIS_URL, BusSettings(partitions=4), prefix=prefix)
    try:
        await eight.publish(STREAM, events(5))
        with pytest.raises(PartitionCountMismatch, match="partitions=8"):
            await four.publish(STREAM, events(5))
        with pytest.raises(PartitionCountMismatch):
            await anext(four.consume(STREAM, GROUP, "c1"))
        await four.publish("other", events(5))  # a new stream takes any count
    finally:
        await eight.aclose()
        await four.aclose()


async def test_layout_and_a_clean_leave(prefix: str) -> None:
    bus = RedisEventBus.from_url(REDIS_URL, FAST, prefix=prefix)
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await bus.publish(STREAM, events(8))
        stream = bus.consume(STREAM, GROUP, "c1", block_ms=BLOCK_MS)
        async with contextlib.aclosing(stream) as batches:
            batch = await anext(batches)
            leases = {key async for key in client.scan_iter(match=f"{prefix}*lease*")}
            assert leases == {f"{prefix}{{{STREAM}}}:lease:{GROUP}:{p}" for p in range(4)}
            assert await client.zrange(f"{prefix}{{{STREAM}}}:members:{GROUP}", 0, -1) == ["c1"]
            await bus.ack(d.id for d in batch)
        keys = {key async for key in client.scan_iter(match=f"{prefix}*")}
        base = f"{prefix}{{{STREAM}}}:"
        assert keys == {base + "meta"} | {f"{base}p{p}" for p in range(4)}
        assert await client.hget(base + "meta", "partitions") == "4"
        for p in range(4):  # the consumer left, with nothing pending: deleted from the group
            assert await client.xinfo_consumers(f"{base}p{p}", GROUP) == []
        assert sum([await client.xlen(f"{base}p{p}") for p in range(4)]) == 8
    finally:
        await client.aclose()
        await bus.aclose()


async def test_redis_lost_mid_stream_is_bus_unavailable_at_once(prefix: str) -> None:
    proxy = Proxy()
    await proxy.start()
    bus = RedisEventBus.from_url(f"redis://127.0.0.1:{proxy.port}/0", FAST, prefix=prefix)
    try:
        await bus.publish(STREAM, events(10))
        batches = bus.consume(STREAM, GROUP, "c1", block_ms=BLOCK_MS)
        first = await anext(batches)
        await bus.ack(d.id for d in first)
        await proxy.cut()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(BusUnavailable):
            async with asyncio.timeout(5):
                while True:  # the rest of the 10 events, then the outage
                    await bus.ack(d.id for d in await anext(batches))
        with pytest.raises(BusUnavailable):
            await bus.publish(STREAM, events(1))
        assert loop.time() - started < 1.5
    finally:
        await bus.aclose()


async def test_a_packed_batch_arrives_entry_by_entry_as_sent(prefix: str) -> None:
    """``publish_encoded`` packs a batch in one script argument (``<partition>:<bytes>:``
    before each text): texts with colons, digits, line ends and multi-byte characters (byte
    lengths, not characters) come out of each partition whole and in order."""
    bus = RedisEventBus.from_url(REDIS_URL, FAST, prefix=prefix)
    texts = ['{"x":"1:2:3"}', '{"é":"ü€𝄞"}', '{"a":"\\n\\r\\n"}', "12:34", "", '{"":":"}']
    sent = [(f"call-{n % 3}", text) for n, text in enumerate(texts * 3)]
    try:
        assert pack_entries(sent[:2], 4).startswith(b"%d:13:" % (partition_for("call-0", 4) + 1))
        await bus.publish_encoded(STREAM, sent)
        client = Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            base = f"{prefix}{{{STREAM}}}:"
            for p in range(4):
                entries = await client.xrange(f"{base}p{p}")
                expected = [text for key, text in sent if partition_for(key, 4) == p]
                assert [fields["e"] for _, fields in entries] == expected
        finally:
            await client.aclose()
    finally:
        await bus.aclose()


async def test_a_claim_loads_its_script_when_redis_does_not_have_it(prefix: str) -> None:
    """The claim script is sent as ``EVALSHA`` by the bus itself (its reply is read as
    bytes): a server without it (restarted, ``SCRIPT FLUSH``; here an unknown SHA, so the
    shared server is left alone) gets it loaded, as redis-py's own script calls do."""
    settings = BusSettings(partitions=1, lease_ms=1000, min_idle_ms=10, max_deliveries=3)
    bus = RedisEventBus.from_url(REDIS_URL, settings, prefix=prefix)
    try:
        await bus.publish(STREAM, events(2))
        batches = bus.consume(STREAM, GROUP, "c1", block_ms=BLOCK_MS)
        async with contextlib.aclosing(batches):
            first = await anext(batches)  # not acknowledged: claimed again
            claim = bus._log.scripts["claim"]
            real, claim.sha = claim.sha, "0" * 40
            again = await anext(batches)
            await bus.ack(d.id for d in again)
        assert [d.event for d in again] == [d.event for d in first]
        assert {d.attempt for d in again} == {2} and claim.sha == real
    finally:
        await bus.aclose()
