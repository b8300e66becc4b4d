"""``TimelineConsumer``: call events from the bus → customers → the timeline, ack after commit.

For each bus batch: decode the events, resolve each call's customer (``CustomerResolver``),
write the whole batch, in bus order, as rows (``NormalisedEvent.timeline_row``) with the
``FastCallWriter`` (``write_rows``: one transaction), and only after that
commit acknowledge the batch. Exactly-once *effect*: the bus delivers at least once, and the
timeline skips an ``event_id`` it already holds, so a redelivery writes nothing twice.

Database down (``TimelineUnavailable`` from the resolver or the writer): the batch is kept,
unacknowledged, and retried in place with exponential back-off (capped at ``retry_cap_s``)
until it commits. It is not handed back to the bus: each bus redelivery counts towards
``max_deliveries`` and a long outage would dead-letter good events. While it waits, this
consumer does not renew its partition leases; with several consumers another one may take
the partitions and, after ``min_idle_ms``, the same entries: both then write them, and the
second write is skipped by ``event_id``.

Micro-batches: after a batch smaller than half ``batch`` the consumer reads again only
``linger_s`` (the bridge's ``consume_linger_ms``) after its last read, so at a steady rate
each batch carries what came in that window and the per-batch work (heartbeat, read,
customer look-up, one transaction, ack) is paid less often per event; a call event waits at
most that much longer. Larger batches mean a backlog: read again at once.

Webhooks are not this consumer's business: the webhook relay tails the committed timeline
(crm_bridge/webhooks/relay.py), so what this consumer commits is delivered from there.

An entry that is not a call event (``InvalidBusEvent``) is logged and left unacknowledged:
the bus redelivers it and then dead-letters it (``bus.dead_letters``) for inspection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from crm_bridge.bus import BusClosed, BusUnavailable, Delivery, DeliveryId, EventBus
from crm_bridge.calls.model import InvalidBusEvent, NormalisedEvent
from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.ports import CallerLookup, Identity, TimelineStore
from ivr_engine.telephony.ami import Backoff
from ivr_engine.timeline.fast_rows import EventRow

__all__ = ["CustomerDirectory", "CustomerResolver", "FastWriter", "TimelineConsumer"]
log = logging.getLogger(__name__)


class FastWriter(Protocol):
    async def write_rows(self, rows: Sequence[EventRow]) -> set[str]:
        """Write known customers' events in one transaction; returns unknown customer ids."""
        ...


class CustomerDirectory(Protocol):
    """Customers by phone number in bulk (``FastCallWriter``: one query, one transaction)."""

    async def phone_owners(self, phones: Sequence[str]) -> dict[str, list[str]]: ...

    async def create_customers(self, phones: Sequence[str | None]) -> list[str]: ...


class CustomerResolver:
    """The customer of each call, decided once per call (cached, LRU) so all of a call's
    events land on one customer.

    * caller ID in E.164 owned by exactly one customer → that customer;
    * owned by nobody → a new customer owning that number (``create_customer_for_identity``:
      if a concurrent call or the engine created one a moment ago, that one);
    * shared by several customers, or withheld → never a guess: a new customer WITHOUT
      identities, one per call (``unlinked``), which an agent merges into the right one
      (``merge_customers`` moves its events). The decision is remembered in memory only:
      if this consumer restarts (or hands the partition over) in the middle of such a call,
      the rest of that call lands on a second unlinked customer (still not on a wrong one,
      and nothing twice).

    With a ``directory`` (the bridge's): the new calls of a batch are resolved together,
    one query for who owns their numbers, then one transaction creating the customers
    needed (the store's rule, under its per-identity lock). Without: one ``lookup`` (the
    engine's caller lookup, same answer as ``store.find_customers``) or ``find_customers``
    per new call, at most ``concurrency`` at once, new customers through the store.
    """

    def __init__(
        self,
        store: TimelineStore,
        *,
        lookup: CallerLookup | None = None,
        directory: CustomerDirectory | None = None,
        cache_size: int = 100_000,
        concurrency: int = 8,
    ) -> None:
        self._store, self._lookup, self._directory = store, lookup, directory
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cache_size = cache_size
        self._gate = asyncio.Semaphore(concurrency)
        self.created = 0
        self.unlinked = 0

    async def customers_for(self, calls: Mapping[str, str | None]) -> dict[str, str]:
        """Call id → customer id for ``{call id: caller}``; ``TimelineUnavailable`` if the
        database cannot answer (then nothing new is remembered but what was resolved)."""
        new = [(call_id, caller) for call_id, caller in calls.items() if call_id not in self._cache]
        if self._directory is not None:
            await self._resolve_together(self._directory, new)
        elif new:
            await self._resolve_each(new)
        found = {}
        for call_id in calls:
            found[call_id] = self._cache[call_id]
            self._cache.move_to_end(call_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return found

    async def _resolve_together(
        self, directory: CustomerDirectory, new: list[tuple[str, str | None]]
    ) -> None:
        phones = sorted({caller for _, caller in new if caller is not None})
        owners = await directory.phone_owners(phones) if phones else {}
        resolved: dict[str, str] = {}
        to_create: list[tuple[str, str | None]] = []  # (call id, phone or None: unlinked)
        for call_id, caller in new:
            found = owners.get(caller, []) if caller is not None else []
            if len(found) == 1:
                resolved[call_id] = found[0]
                continue
            if len(found) > 1:
                log.info("caller %s is shared by several customers: call kept unlinked", caller)
            to_create.append((call_id, caller if not found else None))
        created = await directory.create_customers([phone for _, phone in to_create])
        for (call_id, phone), customer_id in zip(to_create, created, strict=True):
            resolved[call_id] = customer_id
            if phone is None:
                self.unlinked += 1
        self.created += len({p for _, p in to_create if p is not None})
        self._cache.update(resolved)

    async def _resolve_each(self, new: list[tuple[str, str | None]]) -> None:
        results = await asyncio.gather(
            *(self._resolve_call(call_id, caller) for call_id, caller in new),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _resolve_call(self, call_id: str, caller: str | None) -> None:
        async with self._gate:
            self._cache[call_id] = await self._resolve(caller)

    async def _resolve(self, caller: str | None) -> str:
        if caller is not None:
            owners, ambiguous = await self._owners(caller)
            if owners is not None:
                return owners
            if not ambiguous:
                self.created += 1
                return await self._store.create_customer_for_identity(Identity("phone", caller))
            log.info("caller %s is shared by several customers: call kept unlinked", caller)
        self.unlinked += 1
        return (await self._store.create_customer(None, ())).customer_id

    async def _owners(self, phone: str) -> tuple[str | None, bool]:
        """(the one owner or None, whether several own it)."""
        if self._lookup is not None:
            result = await self._lookup.lookup("phone", phone, max_events=0)
            return (result.history.customer_id if result.history else None), result.ambiguous
        owners = await self._store.find_customers(Identity("phone", phone))
        return (owners[0].customer_id if len(owners) == 1 else None), len(owners) > 1

    def customer_of_call(self, call_id: str) -> str | None:
        """The customer this consumer chose for a call (None: not seen, or forgotten)."""
        return self._cache.get(call_id)

    def forget_customers(self, customer_ids: set[str]) -> None:
        """Customers the writer did not find (deleted since): resolve their calls again."""
        for call_id in [c for c, owner in self._cache.items() if owner in customer_ids]:
            del self._cache[call_id]


class TimelineConsumer:
    def __init__(
        self,
        bus: EventBus,
        stream: str,
        group: str,
        consumer: str,
        resolver: CustomerResolver,
        writer: FastWriter,
        *,
        batch: int = 500,
        block_ms: int = 200,
        linger_s: float = 0.0,
        retry_cap_s: float = 5.0,
        on_committed: Callable[[Sequence[NormalisedEvent]], None] | None = None,
    ) -> None:
        self._bus, self._stream, self._group, self._name = bus, stream, group, consumer
        self.resolver, self._writer = resolver, writer
        self._batch, self._block_ms = batch, block_ms
        self.linger_s = linger_s
        self._backoff = Backoff(0.05, retry_cap_s)
        self._bus_backoff = Backoff(0.1, retry_cap_s)
        self._on_committed = on_committed
        self.committed = 0  # events written (or found already written) and acknowledged
        self.db_retries = 0
        self._progress = asyncio.Event()

    async def wait_committed(self, count: int, timeout_s: float) -> None:
        """Until ``committed >= count``; ``TimeoutError`` after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while self.committed < count:
                self._progress.clear()
                await self._progress.wait()

    async def run(self) -> None:
        """Consume until cancelled or the bus is closed; a bus outage restarts ``consume``."""
        while True:
            try:
                batches = self._bus.consume(
                    self._stream,
                    self._group,
                    self._name,
                    batch=self._batch,
                    block_ms=self._block_ms,
                )
                async with contextlib.aclosing(batches):
                    async for deliveries in batches:
                        read_at = asyncio.get_running_loop().time()
                        await self._process(deliveries)
                        self._bus_backoff.reset()
                        await self._linger(len(deliveries), read_at)
            except BusClosed:
                return
            except BusUnavailable as exc:
                delay = self._bus_backoff.next_delay()
                log.warning("bus unavailable (%s); consuming again in %.2fs", exc, delay)
                await asyncio.sleep(delay)

    async def _linger(self, got: int, read_at: float) -> None:
        """After a small batch, let the next one fill: read again ``linger_s`` after this
        read (at once if writing took longer). A batch of half ``batch`` or more means a
        backlog (a read takes ``batch // partitions`` from each): no wait then."""
        if self.linger_s and got < self._batch // 2:
            left = read_at + self.linger_s - asyncio.get_running_loop().time()
            if left > 0:
                await asyncio.sleep(left)

    async def _process(self, deliveries: Sequence[Delivery]) -> None:
        events: list[NormalisedEvent] = []
        ids: list[DeliveryId] = []
        for delivery in deliveries:
            try:
                events.append(NormalisedEvent.from_bus(delivery.event))
                ids.append(delivery.id)
            except InvalidBusEvent as exc:
                log.error(
                    "bus entry %s is not a call event, left to dead-letter: %s", delivery.id, exc
                )
        unwritten = await self._write_until_committed(events)
        if unwritten:
            ids = [i for i, e in zip(ids, events, strict=True) if e.event_id not in unwritten]
        await self._bus.ack(ids)
        written = [e for e in events if e.event_id not in unwritten]
        self.committed += len(written)
        self._progress.set()
        if self._on_committed is not None:
            self._on_committed(written)

    async def _write_until_committed(self, events: list[NormalisedEvent]) -> set[str]:
        """Write, retrying while the timeline is down; the event ids that could not be
        written (their customer vanished three times over) are returned, not acked."""
        while True:
            try:
                unwritten = await self._write(events)
                self._backoff.reset()
                return unwritten
            except TimelineUnavailable as exc:
                self.db_retries += 1
                delay = self._backoff.next_delay()
                log.warning(
                    "timeline unavailable (%s); %d events kept unacknowledged, retry %d in %.2fs",
                    exc,
                    len(events),
                    self.db_retries,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _write(self, events: list[NormalisedEvent]) -> set[str]:
        pending = events
        for _ in range(3):
            customers = await self.resolver.customers_for({e.call_id: e.caller for e in pending})
            rows = [e.timeline_row(customers[e.call_id]) for e in pending]
            missing = await self._writer.write_rows(rows)
            if not missing:
                return set()
            self.resolver.forget_customers(missing)
            pending = [e for e in pending if customers[e.call_id] in missing]
        log.error("customers keep vanishing; %d events left to the bus to redeliver", len(pending))
        return {e.event_id for e in pending}
