"""Webhooks for the engine's timeline (on when ``webhooks_file`` is set).

The engine runs a ``WebhookRelay`` (``crm_bridge.webhooks.relay``) over its timeline, with
its durable delivery store in ``spool_dir/webhooks.db``. The relay tails every event
committed to the timeline, by any writer: the HTTP API (``POST /v1/messages``, conversation
closes, ``POST /v1/events``), the engine's ``call.ivr`` (once its write committed),
continue-by-SMS, and the call bridge (``ivr-engine bridge``, which runs a relay of its own:
one of them leads, the other stands by). Writers announce nothing.

With ``continuation_secret``, the engine's relay signs the continue-by-SMS links again at
delivery, on ``public_url``, for the subscriptions with ``continuation_links`` only, and only
for events the engine sealed (the timeline holds them unsigned: ``continue_by_sms``).
"""

from __future__ import annotations

from crm_bridge.continuation_wire import Keyring
from crm_bridge.webhooks.relay import WebhookRelay
from crm_bridge.webhooks.timeline_payload import outbound_event
from ivr_engine.omni.continue_by_sms import with_sms_links
from ivr_engine.omni.wiring import continuation_key
from ivr_engine.settings import Settings

__all__ = ["STORE_FILE", "open_webhook_relay"]
STORE_FILE = "webhooks.db"


async def open_webhook_relay(settings: Settings) -> WebhookRelay | None:
    if settings.webhooks_file is None:
        return None
    secret = settings.continuation_secret
    render = (
        outbound_event
        if secret is None
        else with_sms_links(Keyring(continuation_key(secret)), settings.public_url)
    )
    return await WebhookRelay.start(
        settings.database_url,
        settings.webhooks_file,
        settings.spool_dir / STORE_FILE,
        render=render,
    )
