"""The in-process event bus (embedded default): the Redis semantics, in memory.

Each partition is a bounded log (``maxlen`` entries; older ones are dropped like Redis
``MAXLEN`` trimming, read or not); each group keeps a read position and a pending-entry
list with delivery counts and delivery times, partitions are owned under leases, and the
shared consume loop (``consumer.py``) drives both this and the Redis bus. Events are stored
as JSON text, so consumers get fresh dicts. Nothing survives the process: use Redis when
more than one process publishes or consumes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from crm_bridge.bus.consumer import GroupView, consume_batches
from crm_bridge.bus.errors import BusClosed
from crm_bridge.bus.model import (
    BusSettings,
    DeadLetter,
    Delivery,
    DeliveryId,
    EncodedEvent,
    Event,
    check_name,
    decode_event,
    encode_event,
    partition_for,
)

__all__ = ["InMemoryEventBus"]
log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    consumer: str
    delivered_at: float
    deliveries: int = 1


@dataclass(slots=True)
class _GroupCursor:
    last_read: int
    pending: dict[int, _Pending] = field(default_factory=dict)


@dataclass(slots=True)
class _Partition:
    entries: dict[int, str] = field(default_factory=dict)
    first: int = 1
    next: int = 1
    groups: dict[str, _GroupCursor] = field(default_factory=dict)

    def append(self, text: str, maxlen: int) -> None:
        self.entries[self.next] = text
        self.next += 1
        while self.next - self.first > maxlen:
            del self.entries[self.first]
            self.first += 1


@dataclass(slots=True)
class _Stream:
    partitions: list[_Partition]
    dead: deque[DeadLetter]
    leases: dict[tuple[str, int], tuple[str, float]] = field(default_factory=dict)
    members: dict[str, dict[str, float]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class InMemoryEventBus:
    def __init__(
        self, settings: BusSettings | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._log = _MemoryLog(settings or BusSettings(), clock)

    @property
    def settings(self) -> BusSettings:
        return self._log.settings

    async def publish(self, stream: str, events: Sequence[Event]) -> None:
        self._log.check_open()
        check_name("stream", stream)
        await self.publish_encoded(stream, [encode_event(event) for event in events])

    async def publish_encoded(self, stream: str, encoded: Sequence[EncodedEvent]) -> None:
        self._log.check_open()
        check_name("stream", stream)
        target = self._log.stream(stream)
        for key, text in encoded:
            part = target.partitions[partition_for(key, self.settings.partitions)]
            part.append(text, self.settings.maxlen)
        if encoded:
            target.changed.set()
            target.changed = asyncio.Event()

    def consume(
        self, stream: str, group: str, consumer: str, *, batch: int = 100, block_ms: int = 1000
    ) -> AsyncGenerator[list[Delivery], None]:
        return consume_batches(self._log, stream, group, consumer, batch, block_ms)

    async def ack(self, ids: Iterable[DeliveryId]) -> int:
        self._log.check_open()
        acked = 0
        for delivery_id in ids:
            found = self._log.streams.get(delivery_id.stream)
            if found is None or not 0 <= delivery_id.partition < len(found.partitions):
                continue
            cursor = found.partitions[delivery_id.partition].groups.get(delivery_id.group)
            seq = _seq(delivery_id.entry)
            if cursor is not None and seq in cursor.pending:
                del cursor.pending[seq]
                acked += 1
        return acked

    async def dead_letters(self, stream: str, *, limit: int = 100) -> list[DeadLetter]:
        self._log.check_open()
        found = self._log.streams.get(check_name("stream", stream))
        return [] if found is None else list(itertools.islice(found.dead, limit))

    async def aclose(self) -> None:
        self._log.closed.set()
        for found in self._log.streams.values():
            found.changed.set()


def _seq(entry: str) -> int:
    try:
        return int(entry)
    except ValueError:
        raise ValueError(f"{entry!r} is not an entry id of the in-process bus") from None


class _MemoryLog:
    """The bus state, and the consume loop's storage steps over it (see ``consumer.py``)."""

    def __init__(self, settings: BusSettings, clock: Callable[[], float]) -> None:
        self.settings, self.clock = settings, clock
        self.streams: dict[str, _Stream] = {}
        self.closed = asyncio.Event()
        self.dead_ids = itertools.count(1)

    def check_open(self) -> None:
        if self.closed.is_set():
            raise BusClosed("the event bus is closed")

    def stream(self, stream: str) -> _Stream:
        found = self.streams.get(stream)
        if found is None:
            found = _Stream(
                partitions=[_Partition() for _ in range(self.settings.partitions)],
                dead=deque(maxlen=self.settings.dead_maxlen),
            )
            self.streams[stream] = found
        return found

    def _open_stream(self, stream: str) -> _Stream:
        self.check_open()
        return self.stream(stream)

    async def ensure_group(self, stream: str, group: str) -> None:
        for part in self._open_stream(stream).partitions:
            if group not in part.groups:
                part.groups[group] = _GroupCursor(last_read=part.first - 1)

    async def sync(self, stream: str, group: str, consumer: str) -> GroupView:
        await asyncio.sleep(0)  # one yield per loop: a backlog never starves the calls' tasks
        found, now = self._open_stream(stream), self.clock()
        lease_s = self.settings.lease_ms / 1000
        members = found.members.setdefault(group, {})
        members[consumer] = now
        for name, seen in list(members.items()):
            if seen < now - lease_s:
                del members[name]
        pending: dict[int, int] = {}
        free: list[int] = []
        for index, part in enumerate(found.partitions):
            holder, expires = found.leases.get((group, index), ("", 0.0))
            if expires <= now:
                free.append(index)
            elif holder == consumer:
                found.leases[(group, index)] = (consumer, now + lease_s)
                pending[index] = len(part.groups[group].pending)
        return GroupView(len(members), pending, tuple(free))

    async def acquire(
        self, stream: str, group: str, consumer: str, partitions: Sequence[int]
    ) -> int:
        found, now = self._open_stream(stream), self.clock()
        taken = 0
        for index in partitions:
            if found.leases.get((group, index), ("", 0.0))[1] <= now:
                found.leases[(group, index)] = (consumer, now + self.settings.lease_ms / 1000)
                taken += 1
        return taken

    async def release(
        self, stream: str, group: str, consumer: str, partitions: Sequence[int]
    ) -> None:
        found = self._open_stream(stream)
        for index in partitions:
            if found.leases.get((group, index), ("", 0.0))[0] == consumer:
                del found.leases[(group, index)]

    async def leave(self, stream: str, group: str, consumer: str) -> None:
        await self.release(stream, group, consumer, range(self.settings.partitions))
        self._open_stream(stream).members.get(group, {}).pop(consumer, None)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, partition: int, count: int
    ) -> list[Delivery]:
        found, now = self._open_stream(stream), self.clock()
        part = found.partitions[partition]
        cursor = part.groups[group]
        idle_s = self.settings.min_idle_ms / 1000
        stale = sorted(seq for seq, p in cursor.pending.items() if p.delivered_at <= now - idle_s)
        out: list[Delivery] = []
        for seq in stale[:count]:
            entry = cursor.pending[seq]
            text = part.entries.get(seq)
            if text is None:
                del cursor.pending[seq]
                log.warning("bus %s/%s: pending entry %d was trimmed (lost)", stream, group, seq)
            elif entry.deliveries >= self.settings.max_deliveries:
                del cursor.pending[seq]
                self._dead_letter(found, stream, group, partition, seq, text, entry.deliveries)
            else:
                entry.consumer, entry.delivered_at = consumer, now
                entry.deliveries += 1
                event = decode_event(text)
                out.append(
                    Delivery(
                        DeliveryId(stream, group, partition, str(seq)), event, entry.deliveries
                    )
                )
        return out

    def _dead_letter(
        self, found: _Stream, stream: str, group: str, partition: int, seq: int, text: str, n: int
    ) -> None:
        log.warning("bus %s/%s: entry %d dead-lettered after %d deliveries", stream, group, seq, n)
        dead_id = str(next(self.dead_ids))
        found.dead.append(DeadLetter(dead_id, decode_event(text), group, partition, str(seq), n))

    async def read_new(
        self,
        stream: str,
        group: str,
        consumer: str,
        partitions: Sequence[int],
        count: int,
        block_ms: int,
    ) -> list[Delivery]:
        deadline = self.clock() + block_ms / 1000
        while True:
            found = self._open_stream(stream)
            changed = found.changed
            out = self._take_new(found, stream, group, consumer, partitions, count)
            remaining = deadline - self.clock()
            if out or remaining <= 0:
                return out
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                return []

    def _take_new(
        self,
        found: _Stream,
        stream: str,
        group: str,
        consumer: str,
        partitions: Sequence[int],
        count: int,
    ) -> list[Delivery]:
        now = self.clock()
        out: list[Delivery] = []
        for index in partitions:
            part = found.partitions[index]
            cursor = part.groups[group]
            start = max(cursor.last_read + 1, part.first)
            for seq in range(start, min(start + count, part.next)):
                cursor.pending[seq] = _Pending(consumer, now)
                event = decode_event(part.entries[seq])
                out.append(Delivery(DeliveryId(stream, group, index, str(seq)), event))
                cursor.last_read = seq
        return out

    async def pause(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self.closed.wait()
        except TimeoutError:
            return
        self.check_open()
