"""The worker that runs each lane: next delivery, attempts with back-off, then a dead letter.

The worker takes the queue first, then the store (deliveries parked after the queue filled
up), oldest first, so order still holds. A delivery is attempted until it is delivered,
rejected, or out of attempts (then it becomes a dead letter). A store failure stalls the
lane (logged, retried) instead of losing a delivery or breaking the order.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from crm_bridge.webhooks.errors import DeliveryStoreError
from crm_bridge.webhooks.lane import Lane
from crm_bridge.webhooks.retry import AttemptResult, DeliveryPolicy, Outcome, backoff_delay
from crm_bridge.webhooks.sender import post_delivery
from crm_bridge.webhooks.store import DeadLetter, Delivery, DeliveryStore
from crm_bridge.webhooks.subscriptions import SubscriptionRegistry

__all__ = ["LaneWorker"]

# the dispatcher's logger, as before this code moved out of it
log = logging.getLogger("crm_bridge.webhooks.dispatcher")
A = TypeVar("A")
R = TypeVar("R")
_STORE_RETRY_S = (0.1, 0.5, 2.0, 10.0)


class LaneWorker:
    """Delivers each lane's deliveries, one at a time, in order; ``spawn`` starts a lane."""

    def __init__(
        self,
        registry: SubscriptionRegistry,
        store: DeliveryStore,
        policy: DeliveryPolicy,
        *,
        session: Callable[[], aiohttp.ClientSession | None],
        changed: asyncio.Condition,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
    ) -> None:
        self._registry, self._store, self._policy = registry, store, policy
        self._session, self._changed = session, changed
        self._clock, self._sleep, self._rng = clock, sleep, rng

    def spawn(self, lane: Lane) -> asyncio.Task[None]:
        """Start ``lane``'s worker task (a crash is logged)."""
        task = asyncio.get_running_loop().create_task(
            self._run(lane), name=f"webhook-lane:{lane.subscription_id}"
        )
        task.add_done_callback(_log_crash)
        return task

    async def _run(self, lane: Lane) -> None:
        while True:
            delivery, stored = await self._next_delivery(lane)
            lane.current, lane.current_is_stored = delivery, stored
            await self._deliver(delivery, stored)
            lane.current = None
            await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _next_delivery(self, lane: Lane) -> tuple[Delivery, bool]:
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
                    await _store_failed(failures)
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
                    await _retry_store(self._store.unpark, delivery.delivery_id)
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
        await _retry_store(self._store.add_dead_letter, letter)
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
        session = self._session()
        assert session is not None  # set by start(), which created this lane's task
        try:
            return await post_delivery(session, subscription, delivery, self._clock())
        except Exception as exc:  # a bug, not the peer: the lane must not die with it
            log.exception(
                "webhooks: %s to %s: attempt failed unexpectedly; retried as usual",
                delivery.delivery_id,
                delivery.subscription_id,
            )
            return AttemptResult(Outcome.RETRY, f"unexpected error: {exc!r:.200}")


async def _retry_store(operation: Callable[[A], Awaitable[R]], arg: A) -> R:
    """A store failure stalls the lane (logged, retried until it works or the dispatcher
    stops) instead of losing a delivery or breaking the order."""
    failures = 0
    while True:
        try:
            return await operation(arg)
        except DeliveryStoreError:
            failures += 1
            await _store_failed(failures)


async def _store_failed(failures: int) -> None:
    pause = _STORE_RETRY_S[min(failures, len(_STORE_RETRY_S)) - 1]
    log.exception("webhooks: delivery store failed; retrying in %.1f s", pause)
    await asyncio.sleep(pause)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("webhooks: %s crashed", task.get_name(), exc_info=task.exception())
