"""Feeds the engine's timeline events to webhook subscribers (external CRMs, SMS gateways).

On when ``webhooks_file`` is set. The engine's ``WebhookFeed`` is a ``TimelineFeed``
(``crm_bridge.webhooks.timeline_feed``: bounded queue, once per event id, never blocks the
writer) over a dispatcher whose durable store is ``spool_dir/webhooks.db``. Fed:

* every call's ``call.ivr`` event, when the call ends (``PublishingSink``);
* the continue-by-SMS ``message.outbound``;
* every event the HTTP API inserts: ``message.inbound`` / ``message.outbound`` of
  ``POST /v1/messages``, ``case.closed`` of a conversation close, and the events of
  ``POST /v1/events`` (``create_api_app(committed=feed)``).

The call bridge (``ivr-engine bridge``, its own process) has its own feed and store file
(``crm_bridge.calls.service``).
"""

from __future__ import annotations

from crm_bridge.webhooks.timeline_feed import TimelineFeed, event_payload
from ivr_engine.flows.call_record import CallRecord, to_write
from ivr_engine.flows.ivr_flow import CallSink
from ivr_engine.settings import Settings

__all__ = ["PublishingSink", "WebhookFeed", "event_payload"]
STORE_FILE = "webhooks.db"


class WebhookFeed(TimelineFeed):
    @classmethod
    async def open(cls, settings: Settings) -> WebhookFeed | None:
        if settings.webhooks_file is None:
            return None
        return await cls.start(settings.webhooks_file, settings.spool_dir / STORE_FILE)


class PublishingSink:
    """The call sink, plus the call's event to webhook subscribers."""

    def __init__(self, inner: CallSink, feed: TimelineFeed) -> None:
        self._inner, self._feed = inner, feed

    def submit(self, record: CallRecord) -> None:
        self._inner.submit(record)
        for event in to_write(record).events:
            self._feed.send(event, {"caller_id": record.phone})
