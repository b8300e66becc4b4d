"""Deliver published events to every matching subscription: in order, retried, never lost.

Each subscription has its own *lane*: a bounded in-memory queue and one worker task, so one
delivery is in flight per subscription (event order is kept, retries included) while a slow
or failing subscriber never holds up the others.

Overflow policy: when a lane's queue is full, the delivery is *parked* in the durable store,
and so is every later one for that lane until the worker has drained the store again; the
worker takes the queue first, then the store, oldest first, so order still holds. Nothing is
dropped: if the store cannot take it, ``publish`` raises. ``stop()`` parks what is still
queued (and the delivery in flight); ``start()`` resumes every lane with parked deliveries.

Delivery is at least once: a delivery interrupted by a stop or crash after the receiver got
it is sent again, with the same ``X-Seed-Delivery`` id. Receivers dedupe on that id.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TypeVar

import aiohttp

from crm_bridge.webhooks.errors import DeliveryStoreError, DispatcherNotRunning, InvalidEvent
from crm_bridge.webhooks.events import EventLimits, encode_event
from crm_bridge.webhooks.retry import AttemptResult, DeliveryPolicy, Outcome, backoff_delay
from crm_bridge.webhooks.sender import new_session, post_delivery
from crm_bridge.webhooks.store import DeadLetter, Delivery, DeliveryStore
from crm_bridge.webhooks.subscriptions import SubscriptionRegistry
from ivr_engine.stopping import cancel_and_wait

__all__ = ["LaneStatus", "OutboundEvent", "WebhookDispatcher"]

log = logging.getLogger(__name__)
A = TypeVar("A")
R = TypeVar("R")
_STORE_RETRY_S = (0.1, 0.5, 2.0, 10.0)
# (event_type, data, event_id, occurred_at), as ``publish`` takes them
OutboundEvent = tuple[str, Mapping[str, object], str, datetime | None]


@dataclass(frozen=True, slots=True)
class LaneStatus:
    queued: int  # in memory
    parked: bool  # the store holds deliveries for this subscription
    in_flight: str | None  # delivery id being attempted (or waiting to be retried)


@dataclass(eq=False)
class _Lane:
    subscription_id: str
    queue: deque[Delivery] = field(default_factory=deque)
    parked: bool = False
    current: Delivery | None = None
    current_is_stored: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None

    def idle(self) -> bool:
        return not self.queue and not self.parked and self.current is None


class WebhookDispatcher:
    def __init__(
        self,
        registry: SubscriptionRegistry,
        store: DeliveryStore,
        *,
        policy: DeliveryPolicy | None = None,
        limits: EventLimits | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._registry, self._store = registry, store
        self._policy, self._limits = policy or DeliveryPolicy(), limits or EventLimits()
        self._given_session, self._session = session, session
        self._clock, self._sleep, self._rng = clock, sleep, rng or random.Random()
        self._lanes: dict[str, _Lane] = {}
        self._changed = asyncio.Condition()
        self._running = False
        self._last_order_key = 0
        self.rejected = 0  # events park_events could not send (InvalidEvent, logged)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the HTTP session and resume every subscription with parked deliveries."""
        if self._running:
            return
        if self._session is None or self._session.closed:
            self._session = new_session(self._policy)
        self._running = True
        for subscription_id in sorted(await self._store.parked_subscriptions()):
            lane = self._lane(subscription_id)
            lane.parked = True
            lane.wake.set()

    async def stop(self, grace_s: float = 0.0) -> None:
        """Wait up to ``grace_s`` for the lanes to empty, then cancel the workers and park
        whatever is still queued or in flight, so the next ``start()`` delivers it."""
        if not self._running:
            return
        self._running = False
        if grace_s > 0:
            try:
                async with asyncio.timeout(grace_s):
                    await self.wait_idle()
            except TimeoutError:
                log.info("webhooks: stopping with deliveries still pending (parked)")
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        await cancel_and_wait(tasks)
        try:
            await self._park_leftovers()
        finally:
            self._lanes.clear()
            if self._session is not None and self._given_session is None:
                await self._session.close()

    async def _park_leftovers(self) -> None:
        for lane in self._lanes.values():
            left = [] if lane.current is None or lane.current_is_stored else [lane.current]
            for delivery in [*left, *lane.queue]:
                try:
                    await self._store.park(delivery)
                except DeliveryStoreError:
                    log.exception("webhooks: LOST delivery %s at stop", delivery.delivery_id)
                    raise

    async def __aenter__(self) -> WebhookDispatcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ publishing

    async def publish(
        self,
        event_type: str,
        data: Mapping[str, object],
        *,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> list[str]:
        """Validate the event (``InvalidEvent`` if it cannot be sent) and queue one delivery
        per matching subscription; return their delivery ids."""
        if not self._running:
            raise DispatcherNotRunning("publish() needs a started dispatcher (call start())")
        event = encode_event(
            event_type, data, event_id=event_id, occurred_at=occurred_at, limits=self._limits
        )
        delivery_ids = []
        for subscription in self._registry.matching(event.event_type):
            self._last_order_key = max(self._last_order_key + 1, time.time_ns())
            delivery = Delivery(
                delivery_id=f"dlv_{uuid.uuid4().hex}",
                subscription_id=subscription.subscription_id,
                event_type=event.event_type,
                event_id=event.event_id,
                body=event.body,
                order_key=self._last_order_key,
            )
            await self._enqueue(delivery)
            delivery_ids.append(delivery.delivery_id)
        return delivery_ids

    async def park_events(self, events: Sequence[OutboundEvent]) -> int:
        """The durable hand-off (the timeline relay): validate each event (``InvalidEvent``
        ones are logged, counted in ``rejected`` and skipped), park one delivery per
        matching subscription in the store, all in one transaction, then wake the lanes.
        Delivery ids are derived from (subscription, event id), so a replayed event is
        parked at most once per store, and carries the same ``X-Seed-Delivery`` anywhere.
        Returns the deliveries parked; ``DeliveryStoreError`` if the store failed."""
        deliveries = []
        for event_type, data, event_id, occurred_at in events:
            try:
                body = encode_event(
                    event_type,
                    data,
                    event_id=event_id,
                    occurred_at=occurred_at,
                    limits=self._limits,
                )
            except InvalidEvent as exc:
                self.rejected += 1
                log.error("webhooks: %s (%s) cannot be sent: %s", event_id, event_type, exc)
                continue
            for subscription in self._registry.matching(body.event_type):
                self._last_order_key = max(self._last_order_key + 1, time.time_ns())
                sid = subscription.subscription_id
                key = hashlib.sha256(f"{sid}\n{body.event_id}".encode()).hexdigest()[:32]
                deliveries.append(
                    Delivery(
                        f"dlv_{key}",
                        sid,
                        body.event_type,
                        body.event_id,
                        body.body,
                        self._last_order_key,
                    )
                )
        parked = await self._store.park_new(deliveries, self._clock())
        if self._running:
            await self._resume({d.subscription_id for d in deliveries})
        return parked

    async def _resume(self, subscription_ids: Collection[str]) -> None:
        """Tell these lanes the store holds deliveries for them."""
        for subscription_id in sorted(subscription_ids):
            if not self._running:  # stopped meanwhile: the next start() resumes them
                break
            lane = self._lane(subscription_id)
            async with lane.lock:
                lane.parked = True
            lane.wake.set()

    async def _enqueue(self, delivery: Delivery) -> None:
        if not self._running:  # stopped while this event was being fanned out: keep it
            await self._store.park(delivery)
            return
        lane = self._lane(delivery.subscription_id)
        async with lane.lock:
            if not self._running or lane.parked or len(lane.queue) >= self._policy.queue_capacity:
                await self._store.park(delivery)
                if self._running and not lane.parked:
                    log.warning(
                        "webhooks: queue of %s is full (%d): parking deliveries in the store",
                        lane.subscription_id,
                        self._policy.queue_capacity,
                    )
                lane.parked = True
            else:
                lane.queue.append(delivery)
        lane.wake.set()

    # ------------------------------------------------------------------ dead letters

    async def dead_letters(
        self, subscription_id: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        return await self._store.dead_letters(subscription_id, limit)

    async def redrive(self, delivery_ids: Collection[str]) -> list[str]:
        """Deliver these dead letters again (same delivery ids); return the ids found."""
        if not self._running:
            raise DispatcherNotRunning("redrive() needs a started dispatcher (call start())")
        revived = await self._store.revive(delivery_ids)  # parked: durable from here on
        await self._resume({d.subscription_id for d in revived})
        found = [d.delivery_id for d in revived]
        if len(found) < len(set(delivery_ids)):
            log.warning("webhooks: redrive: not dead letters: %s", set(delivery_ids) - set(found))
        return found

    async def redrive_all(
        self, subscription_id: str | None = None, limit: int = 10_000
    ) -> list[str]:
        letters = await self._store.dead_letters(subscription_id, limit)
        return await self.redrive([letter.delivery.delivery_id for letter in letters])

    # ------------------------------------------------------------------ observing

    def lanes(self) -> dict[str, LaneStatus]:
        return {
            sid: LaneStatus(
                len(lane.queue), lane.parked, lane.current.delivery_id if lane.current else None
            )
            for sid, lane in self._lanes.items()
        }

    async def wait_idle(self) -> None:
        """Return once every lane is empty: nothing queued, parked or in flight."""
        async with self._changed:
            await self._changed.wait_for(lambda: all(ln.idle() for ln in self._lanes.values()))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------ lanes

    def _lane(self, subscription_id: str) -> _Lane:
        lane = self._lanes.get(subscription_id)
        if lane is None:
            lane = self._lanes[subscription_id] = _Lane(subscription_id)
            lane.task = asyncio.get_running_loop().create_task(
                self._run_lane(lane), name=f"webhook-lane:{subscription_id}"
            )
            lane.task.add_done_callback(_log_crash)
        return lane

    async def _run_lane(self, lane: _Lane) -> None:
        while True:
            delivery, stored = await self._next_delivery(lane)
            lane.current, lane.current_is_stored = delivery, stored
            await self._deliver(delivery, stored)
            lane.current = None
            await self._notify()

    async def _next_delivery(self, lane: _Lane) -> tuple[Delivery, bool]:
        """The queue first (older), then the store (parked after the queue filled up)."""
        failures = 0
        while True:
            if lane.queue:
                return lane.queue.popleft(), False
            if lane.parked:
                try:
                    async with lane.lock:  # a publisher must not park while we conclude "empty"
                        parked = await self._store.next_parked(lane.subscription_id)
                        if parked is None:
                            lane.parked = False
                            log.info(
                                "webhooks: %s: parked deliveries drained", lane.subscription_id
                            )
                except DeliveryStoreError:  # retried outside the lock: publishers don't hang
                    failures += 1
                    await self._store_failed(failures)
                    continue
                if parked is not None:
                    return parked, True
                continue
            lane.wake.clear()
            await self._notify()
            await lane.wake.wait()

    async def _deliver(self, delivery: Delivery, stored: bool) -> None:
        attempt = 0
        while True:
            attempt += 1
            result = await self._attempt(delivery)
            if result.outcome is Outcome.DELIVERED:
                if stored:
                    await self._retry_store(self._store.unpark, delivery.delivery_id)
                return
            if result.outcome is Outcome.REJECTED or attempt >= self._policy.max_attempts:
                break
            delay = backoff_delay(self._policy, attempt, result.retry_after_s, self._rng)
            log.info(
                "webhooks: %s to %s: attempt %d failed (%s); retrying in %.1f s",
                delivery.delivery_id,
                delivery.subscription_id,
                attempt,
                result.detail,
                delay,
            )
            await self._sleep(delay)
        letter = DeadLetter(delivery, attempt, result.detail, self._clock())
        await self._retry_store(self._store.add_dead_letter, letter)
        log.warning(
            "webhooks: %s (%s) to %s dead-lettered after %d attempt(s): %s",
            delivery.delivery_id,
            delivery.event_type,
            delivery.subscription_id,
            attempt,
            result.detail,
        )

    async def _attempt(self, delivery: Delivery) -> AttemptResult:
        subscription = self._registry.get(delivery.subscription_id)
        if subscription is None:
            return AttemptResult(Outcome.REJECTED, "subscription no longer exists")
        assert self._session is not None  # set by start(), which created this lane's task
        return await post_delivery(self._session, subscription, delivery, self._clock())

    async def _retry_store(self, operation: Callable[[A], Awaitable[R]], arg: A) -> R:
        """A store failure stalls the lane (logged, retried until it works or the dispatcher
        stops) instead of losing a delivery or breaking the order."""
        failures = 0
        while True:
            try:
                return await operation(arg)
            except DeliveryStoreError:
                failures += 1
                await self._store_failed(failures)

    async def _store_failed(self, failures: int) -> None:
        pause = _STORE_RETRY_S[min(failures, len(_STORE_RETRY_S)) - 1]
        log.exception("webhooks: delivery store failed; retrying in %.1f s", pause)
        await asyncio.sleep(pause)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("webhooks: %s crashed", task.get_name(), exc_info=task.exception())
