"""From an encoded event to its deliveries, one per matching subscription.

Deliveries are ordered by an ``order_key``: nanoseconds since the epoch, bumped by one where
two would tie, so it is strictly increasing per dispatcher. A published delivery gets a fresh
random id; a parked event (the timeline relay's durable hand-off) gets an id derived from
(subscription, event id), so a replayed event is parked at most once per store, and carries
the same ``X-Seed-Delivery`` anywhere.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from crm_bridge.webhooks.events import EventBody
from crm_bridge.webhooks.store import Delivery
from crm_bridge.webhooks.subscriptions import Subscription

__all__ = [
    "OrderKeys",
    "OutboundEvent",
    "Tailored",
    "published_delivery",
    "replayable_deliveries",
]

# (event_type, data, event_id, occurred_at), as ``publish`` takes them
OutboundEvent = tuple[str, Mapping[str, object], str, datetime | None]


@dataclass(frozen=True, slots=True)
class Tailored:
    """An event whose body depends on the subscription (e.g. a credential that only some
    subscribers may hold): subscriptions are matched on ``event``'s type, and each one gets
    ``tailor(subscription)``, which must keep ``event``'s type and id."""

    event: OutboundEvent
    tailor: Callable[[Subscription], OutboundEvent]


class OrderKeys:
    """Strictly increasing publish-order keys (``time.time_ns()``, or the last one plus 1)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns())
        return self._last


def published_delivery(subscription_id: str, event: EventBody, order_key: int) -> Delivery:
    """The delivery of a published ``event`` to one subscription (a fresh random id)."""
    return Delivery(
        delivery_id=f"dlv_{uuid.uuid4().hex}",
        subscription_id=subscription_id,
        event_type=event.event_type,
        event_id=event.event_id,
        body=event.body,
        order_key=order_key,
    )


def replayable_deliveries(
    event: EventBody, subscriptions: Iterable[Subscription], order_keys: OrderKeys
) -> list[Delivery]:
    """One delivery per subscription, with ids derived from (subscription, event id)."""
    deliveries = []
    for subscription in subscriptions:
        order_key = order_keys.next()
        sid = subscription.subscription_id
        key = hashlib.sha256(f"{sid}\n{event.event_id}".encode()).hexdigest()[:32]
        deliveries.append(
            Delivery(f"dlv_{key}", sid, event.event_type, event.event_id, event.body, order_key)
        )
    return deliveries
