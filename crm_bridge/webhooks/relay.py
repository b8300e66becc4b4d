"""``WebhookRelay``: the timeline is the outbox; committed events → the durable store.

Writers (the HTTP API, the engine's call recorder, continue-by-SMS, the call bridge) only
commit to the timeline; nothing is announced in memory. The relay tails the committed
events in ``seq`` order and, per batch:

1. parks one delivery per matching subscription in the dispatcher's SQLite store, in one
   transaction (``WebhookDispatcher.park_events``); delivery ids are derived from
   (subscription, event id), and the store skips ids it already parked;
2. then stores its cursor in the timeline database (``RelayLease.save``).

A crash between 1 and 2 replays the batch at the next start: the store parks nothing twice,
so the receiver gets each event once. A crash before 1 loses nothing: the events are on the
timeline and the cursor has not moved. Out-of-order commits on PostgreSQL (a transaction
holding seq 10 commits after the one holding 11) are handled by the cursor's gaps
(``relay_cursor``). Only the holder of the lease relays (``relay_lease``): several engine and
bridge processes on one timeline run one relay each, one of them leads, another takes over
when the lease expires (a crash) or at once (a clean stop). Every process keeps running its
own dispatcher, which delivers what its store holds.

Latency: a committed event is parked within ``poll_interval_s`` (0.25 s) when the relay is
idle; the dispatcher then sends it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

from crm_bridge.webhooks.dispatcher import WebhookDispatcher
from crm_bridge.webhooks.errors import DeliveryStoreError
from crm_bridge.webhooks.fan_out import OutboundEvent, Tailored
from crm_bridge.webhooks.relay_cursor import RelayCursor
from crm_bridge.webhooks.relay_lease import RelayLease
from crm_bridge.webhooks.retry import DeliveryPolicy
from crm_bridge.webhooks.sqlite_store import SqliteDeliveryStore
from crm_bridge.webhooks.store import DeliveryStore
from crm_bridge.webhooks.subscriptions import load_subscriptions
from crm_bridge.webhooks.timeline_payload import outbound_event
from ivr_engine.data_dirs import make_private_dir
from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.ports import StoredEvent
from ivr_engine.stopping import cancel_and_wait
from ivr_engine.timeline.store import SqlTimelineStore

__all__ = ["RelaySettings", "TimelineTail", "WebhookRelay"]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RelaySettings:
    name: str = "webhooks"  # one relay (one lease, one cursor) per name and timeline
    poll_interval_s: float = 0.25
    batch: int = 500
    lease_s: float = 10.0  # a crashed leader is replaced after at most this (+ standby poll)
    gap_timeout_s: float = 60.0  # longer than any timeline write transaction
    max_gaps: int = 1000
    remember_s: float = 7 * 86400.0  # how long the store remembers relayed delivery ids


class TimelineTail(Protocol):
    async def events_after_seq(self, after_seq: int, limit: int) -> tuple[StoredEvent, ...]: ...

    async def events_at_seqs(self, seqs: Collection[int]) -> tuple[StoredEvent, ...]: ...


class WebhookRelay:
    def __init__(
        self,
        tail: TimelineTail,
        lease: RelayLease,
        dispatcher: WebhookDispatcher,
        store: DeliveryStore,
        settings: RelaySettings,
        clock: Callable[[], float] = time.time,
        render: Callable[[StoredEvent], OutboundEvent | Tailored] = outbound_event,
    ) -> None:
        self._tail, self._lease, self.dispatcher, self._store = tail, lease, dispatcher, store
        self.settings, self._clock, self._render = settings, clock, render
        self._cursor: RelayCursor | None = None  # set while we hold the lease
        self._renew_at = 0
        self._forget_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._passes = asyncio.Condition()
        self._leading = asyncio.Event()
        self.idle_passes = 0  # passes that found the relay caught up
        self.relayed = 0  # events parked (replays included)

    @classmethod
    async def start(
        cls,
        database_url: str,
        subscriptions_file: Path,
        store_path: Path,
        *,
        policy: DeliveryPolicy | None = None,
        settings: RelaySettings | None = None,
        render: Callable[[StoredEvent], OutboundEvent | Tailored] = outbound_event,
    ) -> Self:
        """Subscriptions validated (``ConfigError``), store opened, dispatcher and relay
        started. One relay per store file (one dispatcher per file). ``render``: an event's
        webhook form, or its forms per subscription (``Tailored``: the engine's gives
        continuation links to the SMS gateway only, ``omni.continue_by_sms``)."""
        registry = load_subscriptions(subscriptions_file)
        await asyncio.to_thread(make_private_dir, store_path.parent)
        store = await SqliteDeliveryStore.open(store_path)
        dispatcher = WebhookDispatcher(registry, store, policy=policy)
        await dispatcher.start()
        settings = settings or RelaySettings()
        owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        lease = RelayLease(database_url, settings.name, owner)
        tail = SqlTimelineStore(database_url, pool_size=1)
        relay = cls(tail, lease, dispatcher, store, settings, render=render)
        try:  # the starting point, now: what the caller writes from here on is delivered
            await lease.ensure_row()
        except TimelineUnavailable as exc:  # the first claim creates it once the DB is back
            log.warning("webhooks: relay %s starting point not stored yet: %s", settings.name, exc)
        relay.run()
        return relay

    @property
    def leader(self) -> bool:
        return self._cursor is not None

    def run(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-relay")
            self._task.add_done_callback(_log_crash)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                more = await self._step()
                failures = 0
            except (TimelineUnavailable, DeliveryStoreError) as exc:
                failures += 1
                pause = min(self.settings.lease_s / 3, 0.1 * 2**failures)
                log.warning("webhooks: relay paused %.1f s: %s", pause, exc)
                await asyncio.sleep(pause)
                continue
            if not more:
                await asyncio.sleep(self._pause())

    def _pause(self) -> float:
        standby = min(1.0, self.settings.lease_s / 5)
        return self.settings.poll_interval_s if self.leader else standby

    async def _step(self) -> bool:
        """One pass; ``True`` when more events are waiting."""
        now = self._now_ms()
        if self._cursor is None:
            self._cursor = await self._lease.claim(now, self._lease_ms)
            if self._cursor is None:
                return False
            log.info("webhooks: relay %s leads from seq %d", self._lease.name, self._cursor.high)
            self._leading.set()
            self._renew_at = now + self._lease_ms // 3
        await self._forget_old()
        return await self._pass(self._cursor)

    async def _pass(self, cursor: RelayCursor) -> bool:
        s = self.settings
        fresh = await self._tail.events_after_seq(cursor.high, s.batch)
        back = await self._tail.events_at_seqs(list(cursor.gaps)) if cursor.gaps else ()
        events = sorted((*back, *fresh), key=lambda e: e.seq)
        if events:
            await self.dispatcher.park_events([self._rendered(e) for e in events])
        now = self._now_ms()
        moved = cursor.advance((e.seq for e in events), now)
        moved, dropped = moved.expire(now, round(s.gap_timeout_s * 1000), s.max_gaps)
        if dropped:
            log.info("webhooks: relay gave up on seq %s (never committed)", dropped[:20])
        if moved != cursor or now >= self._renew_at:
            if not await self._lease.save(moved, now, self._lease_ms):
                log.warning("webhooks: relay %s lost its lease: standing by", self._lease.name)
                self._cursor = None
                self._leading.clear()
                return False
            self._renew_at = now + self._lease_ms // 3
        self._cursor = moved
        self.relayed += len(events)
        more = len(fresh) >= s.batch
        if not more:
            async with self._passes:
                self.idle_passes += 1
                self._passes.notify_all()
        return more

    def _rendered(self, event: StoredEvent) -> OutboundEvent | Tailored:
        """``render``'s form of the event; its plain form if ``render`` fails on it (one
        event's data must not stop the relay and every later event with it)."""
        try:
            return self._render(event)
        except Exception:
            log.exception("webhooks: rendering %s failed: sent in its plain form", event.event_id)
            return outbound_event(event)

    async def _forget_old(self) -> None:
        now = self._clock()
        if now >= self._forget_at:
            await self._store.forget_relayed(now - self.settings.remember_s)
            self._forget_at = now + 3600

    @property
    def _lease_ms(self) -> int:
        return round(self.settings.lease_s * 1000)

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)

    async def wait_leader(self, timeout_s: float = 15.0) -> None:
        """Until this relay holds the lease (``TimeoutError`` after ``timeout_s``)."""
        async with asyncio.timeout(timeout_s):
            await self._leading.wait()

    async def settle(self, timeout_s: float = 15.0) -> None:
        """Until what was committed before this call is parked (by this relay, which must
        lead) and delivered or dead-lettered (for tests and shutdown checks)."""
        async with asyncio.timeout(timeout_s):
            async with self._passes:
                target = self.idle_passes + 2  # a whole pass that began after this call
                await self._passes.wait_for(lambda: self.idle_passes >= target)
            await self.dispatcher.wait_idle()

    async def aclose(self, grace_s: float = 5.0) -> None:
        """Stop relaying, free the lease (a standby takes over at once), stop the
        dispatcher (it parks what is undelivered), close everything."""
        if self._task is not None:
            await cancel_and_wait([self._task])
        try:
            if self._cursor is not None:
                await self._lease.release()
        except TimelineUnavailable as exc:
            log.warning("webhooks: relay lease not released (expires by itself): %s", exc)
        finally:
            self._cursor = None
            await self.dispatcher.stop(grace_s)
            await self._store.aclose()
            await self._lease.close()
            if isinstance(self._tail, SqlTimelineStore):
                await self._tail.close()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("webhooks: %s crashed", task.get_name(), exc_info=task.exception())
