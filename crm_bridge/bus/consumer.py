"""The consume loop, shared by both implementations over a small storage port.

Each loop: heartbeat and renew leases (``sync``), give back or take partitions
(``ownership``), redeliver stale pending entries of owned partitions (or dead-letter them),
and only if there were none, read new entries from the owned partitions that have nothing
pending. An entry that is not an event is dead-lettered by the backend as soon as it reads
or claims it, so it never keeps its partition pending. Partitions taken in this loop are
read from the next one, once ``sync`` has reported what is pending in them. A read takes
``batch // ready partitions`` entries from each (at least one); entries over ``batch`` (one
per partition at most) are yielded next, before the next heartbeat.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol

from crm_bridge.bus.errors import BusError
from crm_bridge.bus.model import BusSettings, Delivery, check_name
from crm_bridge.bus.ownership import plan_ownership

__all__ = ["GroupView", "PartitionLog", "consume_batches"]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GroupView:
    """One consumer's view after a heartbeat: live consumers, what it owns, what is free."""

    live_consumers: int
    pending: dict[int, int]  # owned partition -> entries pending in it (any consumer)
    free: tuple[int, ...]


class PartitionLog(Protocol):
    """Storage steps of the loop; each backend implements them with the same semantics."""

    @property
    def settings(self) -> BusSettings: ...

    async def ensure_group(self, stream: str, group: str) -> None: ...

    async def sync(self, stream: str, group: str, consumer: str) -> GroupView: ...

    async def acquire(
        self, stream: str, group: str, consumer: str, partitions: Sequence[int]
    ) -> int: ...

    async def release(
        self, stream: str, group: str, consumer: str, partitions: Sequence[int]
    ) -> None: ...

    async def leave(self, stream: str, group: str, consumer: str) -> None: ...

    async def claim_stale(
        self, stream: str, group: str, consumer: str, partition: int, count: int
    ) -> list[Delivery]: ...

    async def read_new(
        self,
        stream: str,
        group: str,
        consumer: str,
        partitions: Sequence[int],
        count: int,
        block_ms: int,
    ) -> list[Delivery]: ...

    async def pause(self, seconds: float) -> None: ...


async def consume_batches(
    store: PartitionLog, stream: str, group: str, consumer: str, batch: int, block_ms: int
) -> AsyncGenerator[list[Delivery], None]:
    store.settings.check_consume_args(batch, block_ms)
    for kind, name in (("stream", stream), ("group", group), ("consumer", consumer)):
        check_name(kind, name)
    await store.ensure_group(stream, group)
    loop = _Loop(store, stream, group, consumer, batch, block_ms)
    try:
        while True:
            deliveries = await loop.step()
            if deliveries:
                yield deliveries
    finally:
        await loop.leave()


class _Loop:
    def __init__(
        self,
        store: PartitionLog,
        stream: str,
        group: str,
        consumer: str,
        batch: int,
        block_ms: int,
    ) -> None:
        self.store, self.stream, self.group, self.consumer = store, stream, group, consumer
        self.batch, self.block_ms = batch, block_ms
        self.surplus: list[Delivery] = []

    async def step(self) -> list[Delivery]:
        if self.surplus:
            out, self.surplus = self.surplus[: self.batch], self.surplus[self.batch :]
            return out
        s, g, c = self.stream, self.group, self.consumer
        settings = self.store.settings
        view = await self.store.sync(s, g, c)
        plan = plan_ownership(c, settings.partitions, view.live_consumers, view.pending, view.free)
        if plan.release:
            log.debug("bus %s/%s: %s gives back partitions %s", s, g, c, plan.release)
            await self.store.release(s, g, c, plan.release)
        taken = await self.store.acquire(s, g, c, plan.acquire) if plan.acquire else 0
        owned = [p for p in sorted(view.pending) if p not in plan.release]
        blocked = [p for p in owned if view.pending[p] > 0]
        deliveries = await self._redeliver(blocked)
        if deliveries:
            return deliveries
        ready = [p for p in owned if view.pending[p] == 0]
        if ready:
            return await self._read(ready)
        if not taken:
            idle_ms = max(settings.min_idle_ms // 5, 10) if blocked else self.block_ms
            await self.store.pause(min(idle_ms, self.block_ms) / 1000)
        return []

    async def _redeliver(self, blocked: list[int]) -> list[Delivery]:
        deliveries: list[Delivery] = []
        for partition in blocked:
            room = self.batch - len(deliveries)
            if room <= 0:
                break
            deliveries += await self.store.claim_stale(
                self.stream, self.group, self.consumer, partition, room
            )
        return deliveries

    async def _read(self, ready: list[int]) -> list[Delivery]:
        """Read from every ready partition; with fewer slots than partitions, one entry from
        each and keep the surplus (one per partition, so never split a partition's run)."""
        count = max(self.batch // len(ready), 1)
        deliveries = await self.store.read_new(
            self.stream, self.group, self.consumer, ready, count, self.block_ms
        )
        self.surplus = deliveries[self.batch :]
        return deliveries[: self.batch]

    async def leave(self) -> None:
        """Give back every partition at once (pending entries stay pending)."""
        try:
            await self.store.leave(self.stream, self.group, self.consumer)
        except BusError as exc:
            log.debug(
                "bus %s/%s: %s could not leave: %r", self.stream, self.group, self.consumer, exc
            )
