"""Deliver published events to every matching subscription: in order, retried, never lost.

Each subscription has its own *lane* (``lane``): a bounded in-memory queue and one worker
task (``lane_worker``), so one delivery is in flight per subscription (event order is kept,
retries included) while a slow or failing subscriber never holds up the others.

Overflow policy: when a lane's queue is full, the delivery is *parked* in the durable store,
and so is every later one for that lane until the worker has drained the store again; the
worker takes the queue first, then the store, oldest first, so order still holds. Nothing is
dropped: if the store cannot take it, ``publish`` raises. ``stop()`` parks what is still
queued (and the delivery in flight); ``start()`` resumes every lane with parked deliveries.

Delivery is at least once: a delivery interrupted by a stop or crash after the receiver got
it is sent again, with the same ``X-Seed-Delivery`` id and body. Receivers dedupe on the
body's ``id`` (signed; the header is not).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime
from types import TracebackType

import aiohttp

from crm_bridge.webhooks.errors import DeliveryStoreError, DispatcherNotRunning, InvalidEvent
from crm_bridge.webhooks.events import EventBody, EventLimits, encode_event
from crm_bridge.webhooks.fan_out import (
    OrderKeys,
    OutboundEvent,
    Tailored,
    published_delivery,
    replayable_deliveries,
)
from crm_bridge.webhooks.lane import Lane, LaneStatus, lane_status
from crm_bridge.webhooks.lane_worker import LaneWorker
from crm_bridge.webhooks.retry import DeliveryPolicy
from crm_bridge.webhooks.sender import new_session
from crm_bridge.webhooks.store import DeadLetter, Delivery, DeliveryStore
from crm_bridge.webhooks.subscriptions import SubscriptionRegistry
from ivr_engine.stopping import cancel_and_wait

__all__ = ["WebhookDispatcher"]

log = logging.getLogger(__name__)


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
        self._clock = clock
        self._lanes: dict[str, Lane] = {}
        self._changed = asyncio.Condition()
        self._worker = LaneWorker(
            registry,
            store,
            self._policy,
            session=lambda: self._session,
            changed=self._changed,
            clock=clock,
            sleep=sleep,
            rng=rng or random.Random(),
        )
        self._running = False
        self._order_keys = OrderKeys()
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
            sid, order_key = subscription.subscription_id, self._order_keys.next()
            delivery = published_delivery(sid, event, order_key)
            await self._enqueue(delivery)
            delivery_ids.append(delivery.delivery_id)
        return delivery_ids

    async def park_events(self, events: Sequence[OutboundEvent | Tailored]) -> int:
        """The durable hand-off (the timeline relay): validate each event (``InvalidEvent``
        ones are logged, counted in ``rejected`` and skipped), park one delivery per
        matching subscription in the store, all in one transaction, then wake the lanes.
        A ``Tailored`` event is matched on its type and each subscription gets its own body.
        Delivery ids are derived from (subscription, event id), so a replayed event is
        parked at most once per store, and carries the same ``X-Seed-Delivery`` anywhere.
        Returns the deliveries parked; ``DeliveryStoreError`` if the store failed."""
        deliveries: list[Delivery] = []
        for item in events:
            event = item.event if isinstance(item, Tailored) else item
            body = self._encoded(event)
            if body is None:
                continue
            subscriptions = self._registry.matching(body.event_type)
            if not isinstance(item, Tailored):
                deliveries += replayable_deliveries(body, subscriptions, self._order_keys)
                continue
            for subscription in subscriptions:  # one body per subscription
                own = item.tailor(subscription)
                own_body = body if own is event else self._encoded(own)
                if own_body is not None:
                    deliveries += replayable_deliveries(own_body, [subscription], self._order_keys)
        parked = await self._store.park_new(deliveries, self._clock())
        if self._running:
            await self._resume({d.subscription_id for d in deliveries})
        return parked

    def _encoded(self, event: OutboundEvent) -> EventBody | None:
        event_type, data, event_id, occurred_at = event
        try:
            return encode_event(
                event_type, data, event_id=event_id, occurred_at=occurred_at, limits=self._limits
            )
        except InvalidEvent as exc:
            self.rejected += 1
            log.error("webhooks: %s (%s) cannot be sent: %s", event_id, event_type, exc)
            return None

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

    def subscription_ids(self) -> list[str]:
        """The ids of the subscriptions this dispatcher delivers to, in registration order."""
        return [subscription.subscription_id for subscription in self._registry]

    def lanes(self) -> dict[str, LaneStatus]:
        return {sid: lane_status(lane) for sid, lane in self._lanes.items()}

    async def wait_idle(self) -> None:
        """Return once every lane is empty: nothing queued, parked or in flight."""
        async with self._changed:
            await self._changed.wait_for(lambda: all(ln.idle() for ln in self._lanes.values()))

    # ------------------------------------------------------------------ lanes

    def _lane(self, subscription_id: str) -> Lane:
        lane = self._lanes.get(subscription_id)
        if lane is None:
            lane = self._lanes[subscription_id] = Lane(subscription_id)
            lane.task = self._worker.spawn(lane)
        return lane
