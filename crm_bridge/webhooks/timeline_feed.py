"""``TimelineFeed``: timeline events, once committed, to the ``WebhookDispatcher``.

The writers (the HTTP API, the call bridge's consumer, the engine's call sink) call
``committed(events)`` / ``send(event)`` after their transaction committed. That only puts
the event on a bounded in-memory queue (``capacity``) and returns: the write path never
waits on a subscriber. One pump task hands the queue to ``dispatcher.publish``, whose
per-subscription lanes are bounded too and park overflow in the durable delivery store.

* Once per event: a timeline ``event_id`` seen in the last ``remember`` events is not
  queued again (callers already announce only what they inserted; this also covers a
  replay that reaches the feed twice in one process).
* Queue full (the delivery store is stalled for ``capacity`` events): the event is NOT
  queued; an error is logged (the first, then every 1000th) and ``overflowed`` counts it.
  The event stays on the timeline, which is the record; the webhook delivery is lost.
* An event that cannot be sent (``InvalidEvent``: e.g. an integer beyond ±2^53 in data),
  a delivery store that refuses it, a dispatcher already stopped: logged, counted in
  ``rejected``.

The body's ``data`` is the timeline event (``event_payload``), with its ``event_id``. The
envelope ``id`` is that event id when it fits ``[A-Za-z0-9_.:-]{1,80}``, else ``tl_`` and
a hash of it (the same for every replay). An ``event_type`` that is not a webhook type
(dotted lowercase, 2 to 4 parts) is sent as ``timeline.event``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self

from crm_bridge.webhooks.dispatcher import WebhookDispatcher
from crm_bridge.webhooks.errors import WebhookError
from crm_bridge.webhooks.events import EVENT_TYPE
from crm_bridge.webhooks.retry import DeliveryPolicy
from crm_bridge.webhooks.sqlite_store import SqliteDeliveryStore
from crm_bridge.webhooks.store import DeliveryStore
from crm_bridge.webhooks.subscriptions import load_subscriptions
from ivr_engine.ports import NewTimelineEvent, StoredEvent

__all__ = ["OTHER_EVENT_TYPE", "TimelineFeed", "event_payload", "webhook_event_id"]
log = logging.getLogger(__name__)

TimelineEvent = NewTimelineEvent | StoredEvent
OTHER_EVENT_TYPE: Final = "timeline.event"
_WEBHOOK_ID = re.compile(r"[A-Za-z0-9_.:-]{1,80}")


def event_payload(event: TimelineEvent, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event_id": event.event_id,
        "customer_id": event.customer_id or None,
        "occurred_at": event.occurred_at.isoformat(),
        "channel": event.channel,
        "event_type": event.event_type,
        "intent": event.intent,
        "case_id": event.case_id,
        "data": dict(event.data),
    }
    if isinstance(event, StoredEvent):
        payload["seq"] = event.seq
    return payload | dict(extra or {})


def webhook_event_id(event_id: str) -> str:
    if _WEBHOOK_ID.fullmatch(event_id):
        return event_id
    return "tl_" + hashlib.sha256(event_id.encode()).hexdigest()[:40]


def webhook_event_type(event_type: str) -> str:
    return event_type if EVENT_TYPE.fullmatch(event_type) else OTHER_EVENT_TYPE


@dataclass(frozen=True, slots=True)
class _Pending:
    event: TimelineEvent
    extra: Mapping[str, Any] | None


class TimelineFeed:
    def __init__(
        self,
        dispatcher: WebhookDispatcher,
        store: DeliveryStore,
        *,
        capacity: int = 10_000,
        remember: int = 100_000,
    ) -> None:
        self.dispatcher = dispatcher
        self._store = store
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(capacity)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._pump: asyncio.Task[None] | None = None
        self.published = 0  # events handed to the dispatcher
        self.duplicates = 0  # events announced again, not queued
        self.overflowed = 0  # events not queued: the queue was full (logged)
        self.rejected = 0  # events the dispatcher refused (logged)

    @classmethod
    async def start(
        cls,
        subscriptions_file: Path,
        store_path: Path,
        *,
        policy: DeliveryPolicy | None = None,
    ) -> Self:
        """Subscriptions validated (``ConfigError``), durable store opened, dispatcher and
        pump started. One feed per store file (one dispatcher per file)."""
        registry = load_subscriptions(subscriptions_file)
        await asyncio.to_thread(store_path.parent.mkdir, parents=True, exist_ok=True)
        store = await SqliteDeliveryStore.open(store_path)
        dispatcher = WebhookDispatcher(registry, store, policy=policy)
        await dispatcher.start()
        feed = cls(dispatcher, store)
        feed.run()
        return feed

    def run(self) -> None:
        """Start the pump (the dispatcher must be started)."""
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._run(), name="webhook-feed")
            self._pump.add_done_callback(_log_crash)

    # ------------------------------------------------------------------ the write path

    def committed(self, events: Sequence[TimelineEvent]) -> None:
        for event in events:
            self.send(event)

    def send(self, event: TimelineEvent, extra: Mapping[str, Any] | None = None) -> None:
        """Queue one committed event; returns at once, never raises."""
        if event.event_id in self._seen:
            self.duplicates += 1
            return
        try:
            self._queue.put_nowait(_Pending(event, extra))
        except asyncio.QueueFull:
            self.overflowed += 1
            if self.overflowed % 1000 == 1:
                log.error(
                    "webhooks: feed queue full (%d): %s (%s) not delivered; %d so far",
                    self._queue.maxsize,
                    event.event_id,
                    event.event_type,
                    self.overflowed,
                )
            return
        self._seen[event.event_id] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)

    # ------------------------------------------------------------------ the pump

    async def _run(self) -> None:
        while True:
            pending = await self._queue.get()
            try:
                await self._publish(pending.event, pending.extra)
            finally:
                self._queue.task_done()

    async def _publish(self, event: TimelineEvent, extra: Mapping[str, Any] | None) -> None:
        try:
            await self.dispatcher.publish(
                webhook_event_type(event.event_type),
                event_payload(event, extra),
                event_id=webhook_event_id(event.event_id),
                occurred_at=event.occurred_at,
            )
            self.published += 1
        except WebhookError as exc:  # InvalidEvent, DeliveryStoreError, not running
            self.rejected += 1
            log.error("webhooks: %s (%s) not delivered: %s", event.event_id, event.event_type, exc)

    async def drain(self) -> None:
        """Until everything queued so far was handed to the dispatcher."""
        await self._queue.join()

    async def aclose(self, grace_s: float = 5.0) -> None:
        """Hand what is queued to the dispatcher (within ``grace_s``), stop it (it parks
        what is undelivered in the store), close the store."""
        try:
            async with asyncio.timeout(grace_s):
                await self.drain()
        except TimeoutError:
            log.error("webhooks: %d event(s) still queued at stop: lost", self._queue.qsize())
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        await self.dispatcher.stop(grace_s)
        await self._store.aclose()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("webhooks: %s crashed", task.get_name(), exc_info=task.exception())
