"""A committed timeline event as a webhook event (pure): type, envelope id and body ``data``.

The body's ``data`` is the timeline event (``event_payload``), with its ``event_id`` and
``seq``; ``call.ivr`` also carries ``caller_id`` at the top (as it always has). The
envelope ``id`` is the event id when it fits ``[A-Za-z0-9_.:-]{1,80}``, else ``tl_`` and
40 hex digits of its SHA-256 (the same for every replay). An ``event_type`` that is not a
webhook type (dotted lowercase, 2 to 4 parts) is sent as ``timeline.event``.

Numbers in ``data`` are sent in the API's form (``portable_json``: the same from SQLite and
PostgreSQL), and an integer beyond JavaScript's safe range (±2^53-1: ``1e23`` kept by
PostgreSQL as ``10**23``, a client's 64-bit id) as the string of its decimal digits: the
webhook contract sends no integer a JavaScript receiver would silently round, and the
event is sent, not refused.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

from crm_bridge.webhooks.events import EVENT_TYPE
from crm_bridge.webhooks.fan_out import OutboundEvent
from ivr_engine.api.json_values import portable_json
from ivr_engine.ports import StoredEvent

__all__ = [
    "OTHER_EVENT_TYPE",
    "event_payload",
    "outbound_event",
    "safe_integers",
    "webhook_event_id",
    "webhook_event_type",
]
OTHER_EVENT_TYPE: Final = "timeline.event"
_WEBHOOK_ID = re.compile(r"[A-Za-z0-9_.:-]{1,80}")
_SAFE_INT: Final = 2**53 - 1


def event_payload(event: StoredEvent) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event_id": event.event_id,
        "customer_id": event.customer_id or None,
        "occurred_at": event.occurred_at.isoformat(),
        "channel": event.channel,
        "event_type": event.event_type,
        "intent": event.intent,
        "case_id": event.case_id,
        "data": safe_integers(portable_json(dict(event.data))),
        "seq": event.seq,
    }
    if event.event_type == "call.ivr":
        payload["caller_id"] = event.data.get("caller_id")
    return payload


def safe_integers(value: Any) -> Any:
    """``value`` with every integer beyond ±2^53-1 as the string of its decimal digits."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _SAFE_INT:
        return str(value)
    if isinstance(value, dict):
        return {key: safe_integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [safe_integers(item) for item in value]
    return value


def webhook_event_id(event_id: str) -> str:
    if _WEBHOOK_ID.fullmatch(event_id):
        return event_id
    return "tl_" + hashlib.sha256(event_id.encode()).hexdigest()[:40]


def webhook_event_type(event_type: str) -> str:
    return event_type if EVENT_TYPE.fullmatch(event_type) else OTHER_EVENT_TYPE


def outbound_event(event: StoredEvent) -> OutboundEvent:
    return (
        webhook_event_type(event.event_type),
        event_payload(event),
        webhook_event_id(event.event_id),
        event.occurred_at,
    )
