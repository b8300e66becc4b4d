"""Feeds the engine's timeline events to webhook subscribers (external CRMs, SMS gateways).

On when ``webhooks_file`` is set. Each event is handed to the ``WebhookDispatcher`` in the
background (a call never waits on a CRM); the dispatcher keeps deliveries in its SQLite
store (``spool_dir/webhooks.db``), so queued deliveries survive a restart. Fed today: every
call's ``call.ivr`` event (when the call ends) and the continue-by-SMS ``message.outbound``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from crm_bridge.webhooks import WebhookDispatcher
from crm_bridge.webhooks.sqlite_store import SqliteDeliveryStore
from crm_bridge.webhooks.subscriptions import load_subscriptions
from ivr_engine.flows.call_record import CallRecord, to_write
from ivr_engine.flows.ivr_flow import CallSink
from ivr_engine.ports import NewTimelineEvent
from ivr_engine.settings import Settings

log = logging.getLogger(__name__)


def event_payload(
    event: NewTimelineEvent, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "customer_id": event.customer_id or None,
        "occurred_at": event.occurred_at.isoformat(),
        "channel": event.channel,
        "event_type": event.event_type,
        "intent": event.intent,
        "case_id": event.case_id,
        "data": dict(event.data),
        **(extra or {}),
    }


class WebhookFeed:
    def __init__(self, dispatcher: WebhookDispatcher, store: SqliteDeliveryStore) -> None:
        self._dispatcher = dispatcher
        self._store = store
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, settings: Settings) -> WebhookFeed | None:
        if settings.webhooks_file is None:
            return None
        registry = load_subscriptions(settings.webhooks_file)
        settings.spool_dir.mkdir(parents=True, exist_ok=True)
        store = await SqliteDeliveryStore.open(settings.spool_dir / "webhooks.db")
        dispatcher = WebhookDispatcher(registry, store)
        await dispatcher.start()
        return cls(dispatcher, store)

    def send(self, event: NewTimelineEvent, extra: Mapping[str, Any] | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._publish(event, extra))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, event: NewTimelineEvent, extra: Mapping[str, Any] | None) -> None:
        try:
            await self._dispatcher.publish(
                event.event_type,
                event_payload(event, extra),
                event_id=event.event_id,
                occurred_at=event.occurred_at,
            )
        except Exception as exc:  # a webhook problem must never touch the call path
            log.error("webhook publish of %s failed: %r", event.event_id, exc)

    async def aclose(self, grace_s: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        await self._dispatcher.stop(grace_s)
        await self._store.aclose()


class PublishingSink:
    """The call sink, plus the call's event to webhook subscribers."""

    def __init__(self, inner: CallSink, feed: WebhookFeed) -> None:
        self._inner, self._feed = inner, feed

    def submit(self, record: CallRecord) -> None:
        self._inner.submit(record)
        for event in to_write(record).events:
            self._feed.send(event, {"caller_id": record.phone})
