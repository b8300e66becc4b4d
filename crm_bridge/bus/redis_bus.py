"""The Redis Streams event bus (production): shared by every engine and bridge process.

Layout for stream ``S`` (``P`` = prefix, default ``ivr:bus:``; the ``{S}`` hash tag keeps
one stream's keys in one slot)::

    P{S}:meta                 HASH    partitions (checked by every process: a mismatch is
                                      PartitionCountMismatch, never a silent re-mapping)
    P{S}:p<i>                 STREAM  partition i; one field ``e`` = the event's JSON;
                                      one consumer group per bus group
    P{S}:dead                 STREAM  dead letters: e, g (group), p, id (entry), n (deliveries)
    P{S}:lease:<group>:<i>    STRING  the consumer owning partition i, with a PX expiry
    P{S}:members:<group>      ZSET    consumer → last heartbeat (server ms)

``publish`` sends one script call (``append``: ``XADD ... MAXLEN ~ maxlen`` for each
event, no MULTI) per 1,000 events, packed in one argument (``pack_entries``);
``append_script = False`` sends a pipeline of XADDs instead (the older path, kept for the
side-by-side bench). The consume loop
(``consumer.py``) uses ``XREADGROUP`` (``>``) over the owned partitions that have nothing
pending, and the Lua in ``redis_lua.py`` for ownership and for ``XAUTOCLAIM`` +
dead-lettering. The commands that return entries are read as bytes and decoded entry by
entry (``redis_entries.py``), so an entry something else wrote that is not UTF-8 is skipped
like any other entry that is not an event: the consumer that read or claimed it
dead-letters it at once (the ``dead_letter`` script: dead stream and ``XACK`` in one
step). Commands are not retried; every failure is ``BusUnavailable`` within ``timeout_s``
(plus ``block_ms`` for a blocking read).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.client import NEVER_DECODE
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from crm_bridge.bus.consumer import GroupView, consume_batches
from crm_bridge.bus.errors import BusClosed, BusUnavailable, PartitionCountMismatch
from crm_bridge.bus.model import (
    BusSettings,
    DeadLetter,
    Delivery,
    DeliveryId,
    EncodedEvent,
    Event,
    check_name,
    encode_event,
    partition_for,
)
from crm_bridge.bus.redis_entries import (
    NotEvent,
    RawEntry,
    dead_letter,
    split_events,
    stream_replies,
)
from crm_bridge.bus.redis_lua import SCRIPTS
from ivr_engine.redis_client import open_redis

__all__ = ["DEFAULT_PREFIX", "RedisEventBus"]
log = logging.getLogger(__name__)
DEFAULT_PREFIX = "ivr:bus:"
PIPELINE_CHUNK = 1_000
_FAILURES = (RedisError, OSError, TimeoutError)
T = TypeVar("T")
Arg = str | int | bytes  # a command or script argument
_AS_BYTES = {NEVER_DECODE: True}  # redis-py leaves this command's reply undecoded


class RedisEventBus:
    def __init__(
        self,
        client: Redis,
        settings: BusSettings | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 2.0,
        owns_client: bool = False,
    ) -> None:
        self._log = _RedisLog(client, settings or BusSettings(), prefix, timeout_s)
        self._owns_client = owns_client
        self.append_script = True  # False: one pipelined XADD per event (older path)

    @classmethod
    def from_url(
        cls,
        url: str = "redis://127.0.0.1:6379/0",
        settings: BusSettings | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout_s: float = 1.0,
        timeout_s: float = 2.0,
    ) -> RedisEventBus:
        client = open_redis(url, connect_timeout_s=connect_timeout_s)
        return cls(client, settings, prefix=prefix, timeout_s=timeout_s, owns_client=True)

    @property
    def settings(self) -> BusSettings:
        return self._log.settings

    async def publish(self, stream: str, events: Sequence[Event]) -> None:
        check_name("stream", stream)
        await self._append(stream, [encode_event(event) for event in events])

    async def publish_encoded(self, stream: str, entries: Sequence[EncodedEvent]) -> None:
        check_name("stream", stream)
        await self._append(stream, entries)

    async def _append(self, stream: str, encoded: Sequence[EncodedEvent]) -> None:
        await self._log.ensure_group(stream, "")
        n = self.settings.partitions
        for start in range(0, len(encoded), PIPELINE_CHUNK):
            chunk = encoded[start : start + PIPELINE_CHUNK]
            if not self.append_script:
                await self._append_pipelined(stream, chunk)
                continue
            packed = pack_entries(chunk, n)
            await self._log.script(
                "append", self._log.partition_keys(stream), self.settings.maxlen, packed
            )

    async def _append_pipelined(self, stream: str, chunk: Sequence[EncodedEvent]) -> None:
        n, maxlen = self.settings.partitions, self.settings.maxlen
        pipe = self._log.client.pipeline(transaction=False)
        for key, text in chunk:
            pipe.xadd(
                self._log.key(stream, f"p{partition_for(key, n)}"),
                {"e": text},
                maxlen=maxlen,
                approximate=True,
            )
        await self._log.run(pipe.execute)

    def consume(
        self, stream: str, group: str, consumer: str, *, batch: int = 100, block_ms: int = 1000
    ) -> AsyncGenerator[list[Delivery], None]:
        return consume_batches(self._log, stream, group, consumer, batch, block_ms)

    async def ack(self, ids: Iterable[DeliveryId]) -> int:
        by_log: defaultdict[tuple[str, str, int], list[str]] = defaultdict(list)
        for delivery_id in ids:
            by_log[(delivery_id.stream, delivery_id.group, delivery_id.partition)].append(
                delivery_id.entry
            )
        if not by_log:
            self._log.check_open()
            return 0
        pipe = self._log.client.pipeline(transaction=False)
        for (stream, group, partition), entries in by_log.items():
            pipe.xack(self._log.key(stream, f"p{partition}"), group, *entries)
        return sum(int(count) for count in await self._log.run(pipe.execute))

    async def dead_letters(self, stream: str, *, limit: int = 100) -> list[DeadLetter]:
        key = self._log.key(check_name("stream", stream), "dead")
        rows: Any = await self._log.run_bytes("XRANGE", key, "-", "+", "COUNT", limit)
        return [dead_letter(dead_id, fields) for dead_id, fields in rows]

    async def aclose(self) -> None:
        self._log.closed.set()
        if self._owns_client:
            await self._log.client.aclose()


class _RedisLog:
    """The consume loop's storage steps as Redis commands and scripts (see ``consumer.py``)."""

    def __init__(self, client: Redis, settings: BusSettings, prefix: str, timeout_s: float) -> None:
        self.client, self.settings, self.prefix = client, settings, prefix
        self.timeout_s = timeout_s
        self.closed = asyncio.Event()
        self.scripts: dict[str, AsyncScript] = {
            name: client.register_script(source) for name, source in SCRIPTS.items()
        }
        self.checked: set[str] = set()  # streams whose partition count was checked

    def key(self, stream: str, suffix: str) -> str:
        return f"{self.prefix}{{{stream}}}:{suffix}"

    def check_open(self) -> None:
        if self.closed.is_set():
            raise BusClosed("the event bus is closed")

    async def run(self, call: Callable[[], Awaitable[T]], extra_s: float = 0.0) -> T:
        self.check_open()
        try:
            async with asyncio.timeout(self.timeout_s + extra_s):
                return await call()
        except _FAILURES as exc:
            self.check_open()  # closed while waiting: BusClosed, not an outage
            raise BusUnavailable(f"event bus (Redis) failed: {exc!r}") from exc
        except UnicodeDecodeError as exc:  # not expected: replies with entries are bytes
            raise BusUnavailable(f"event bus (Redis) returned non-UTF-8 text: {exc}") from exc

    async def _as_bytes(self, *command: Arg) -> Any:
        """One command with its reply left as bytes (redis-py's ``NEVER_DECODE``)."""
        return await self.client.execute_command(*command, **_AS_BYTES)  # type: ignore[no-untyped-call]

    async def run_bytes(self, *command: Arg, extra_s: float = 0.0) -> Any:
        """``run`` of a command whose reply holds entries, left as bytes: ``redis_entries``
        decodes them one by one."""
        return await self.run(lambda: self._as_bytes(*command), extra_s)

    async def script(self, name: str, keys: Sequence[str], *args: Arg) -> Any:
        return await self.run(lambda: self.scripts[name](keys=list(keys), args=list(args)))

    async def script_bytes(self, name: str, keys: Sequence[str], *args: Arg) -> Any:
        """``script`` with the reply left as bytes (``run_bytes``)."""
        script = self.scripts[name]

        async def call() -> Any:
            try:
                return await self._as_bytes("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:  # not loaded (a restarted server, SCRIPT FLUSH): load it
                script.sha = await self.client.script_load(script.script)
                return await self._as_bytes("EVALSHA", script.sha, len(keys), *keys, *args)

        return await self.run(call)

    async def events(
        self, stream: str, group: str, consumer: str, found: Iterable[RawEntry]
    ) -> list[Delivery]:
        """The events among entries read or claimed. The others can never become events:
        they are dead-lettered (and acknowledged) before the events are handed over, so a
        partition's later events are not held behind them; if that fails, the whole read
        stays pending and the claims bring it back."""
        deliveries, skipped = split_events(found)
        by_partition: defaultdict[int, list[NotEvent]] = defaultdict(list)
        for where, why in skipped:
            by_partition[where.partition].append((where, why))
        for partition, entries in by_partition.items():
            await self._dead_letter(stream, group, consumer, partition, entries)
        return deliveries

    async def _dead_letter(
        self, stream: str, group: str, consumer: str, partition: int, entries: list[NotEvent]
    ) -> None:
        keys = [self.key(stream, f"p{partition}"), self.key(stream, "dead")]
        ids = [where.entry for where, _ in entries]
        args: list[Arg] = [group, consumer, partition, self.settings.dead_maxlen, *ids]
        dead = int(await self.script("dead_letter", keys, *args))
        log.warning(  # fewer dead-lettered: claimed by another consumer since, or trimmed
            "bus %s/%s: skipped %d entries that are not events, dead-lettered %d (p%d): %s",
            stream,
            group,
            len(entries),
            dead,
            partition,
            "; ".join(f"{where.entry}: {why}" for where, why in entries[:3]),
        )

    def partition_keys(self, stream: str) -> list[str]:
        return [self.key(stream, f"p{i}") for i in range(self.settings.partitions)]

    def _lease_keys(self, stream: str, group: str, partitions: Iterable[int]) -> list[str]:
        return [self.key(stream, f"lease:{group}:{i}") for i in partitions]

    async def ensure_group(self, stream: str, group: str) -> None:
        """Check the partition count and create the group (once per ``consume`` call, so
        a restarted consumer recreates a deleted group; once per stream for publishers)."""
        if not group and stream in self.checked:
            return
        keys = [self.key(stream, "meta"), *self.partition_keys(stream)]
        stored = int(await self.script("ensure", keys, self.settings.partitions, group))
        if stored != self.settings.partitions:
            raise PartitionCountMismatch(stream, self.settings.partitions, stored)
        self.checked.add(stream)

    async def sync(self, stream: str, group: str, consumer: str) -> GroupView:
        everything = range(self.settings.partitions)
        keys = [
            self.key(stream, f"members:{group}"),
            *self._lease_keys(stream, group, everything),
            *self.partition_keys(stream),
        ]
        live, owned, pending, free = await self.script(
            "sync", keys, consumer, self.settings.lease_ms, group
        )
        counts = {int(p): int(c) for p, c in zip(owned, pending, strict=True)}
        return GroupView(int(live), counts, tuple(int(p) for p in free))

    async def acquire(
        self, stream: str, group: str, consumer: str, partitions: Sequence[int]
    ) -> int:
        keys = self._lease_keys(stream, group, partitions)
        return int(await self.script("acquire", keys, consumer, self.settings.lease_ms))

    async def release(
        self, stream: str, group: str, consumer: str, partitions: Sequence[int]
    ) -> None:
        await self.script("release", self._lease_keys(stream, group, partitions), consumer)

    async def leave(self, stream: str, group: str, consumer: str) -> None:
        everything = range(self.settings.partitions)
        keys = [
            self.key(stream, f"members:{group}"),
            *self._lease_keys(stream, group, everything),
            *self.partition_keys(stream),
        ]
        await self.script("leave", keys, consumer, group)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, partition: int, count: int
    ) -> list[Delivery]:
        s = self.settings
        keys = [self.key(stream, f"p{partition}"), self.key(stream, "dead")]
        args = (group, consumer, s.min_idle_ms, count, s.max_deliveries, partition, s.dead_maxlen)
        claimed, dead, lost = await self.script_bytes("claim", keys, *args)
        if dead:
            log.warning("bus %s/%s: %d entries dead-lettered (p%d)", stream, group, dead, partition)
        if lost:
            log.warning("bus %s/%s: %d pending entries were trimmed (lost)", stream, group, lost)
        found = [
            (DeliveryId(stream, group, partition, entry.decode()), text, int(n))
            for entry, text, n in claimed
        ]
        return await self.events(stream, group, consumer, found)

    async def read_new(
        self,
        stream: str,
        group: str,
        consumer: str,
        partitions: Sequence[int],
        count: int,
        block_ms: int,
    ) -> list[Delivery]:
        keys = [self.key(stream, f"p{p}") for p in partitions]
        index = {key.encode(): p for key, p in zip(keys, partitions, strict=True)}
        reply = await self.run_bytes(
            *("XREADGROUP", "GROUP", group, consumer, "COUNT", count, "BLOCK", block_ms),
            *("STREAMS", *keys, *[">"] * len(keys)),
            extra_s=block_ms / 1000,
        )
        found = [
            (DeliveryId(stream, group, index[key], entry.decode()), (fields or {}).get(b"e"), 1)
            for key, entries in stream_replies(reply)
            for entry, fields in entries
        ]
        return await self.events(stream, group, consumer, found)

    async def pause(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self.closed.wait()
        except TimeoutError:
            return
        self.check_open()


def pack_entries(entries: Sequence[EncodedEvent], partitions: int) -> bytes:
    """The ``append`` script's batch argument: ``<partition + 1>:<bytes>:<text>`` for each
    entry, back to back (one bulk string: redis-py packs it at once, not two per event)."""
    parts: list[bytes] = []
    for key, text in entries:
        body = text.encode()
        parts += (b"%d:%d:" % (partition_for(key, partitions) + 1, len(body)), body)
    return b"".join(parts)
