"""Outbound webhooks to external CRMs (issue #4): signed, retried, ordered, never lost.

``publish(event_type, data)`` validates the event once and queues one delivery per matching
subscription. Each delivery is an HTTP POST of the JSON body with ``X-Seed-Event``,
``X-Seed-Delivery``, ``X-Seed-Timestamp`` and ``X-Seed-Signature`` (see ``signing.py`` and
``docs/webhooks.md``). Modules:

* ``subscriptions``: registry and YAML loader (pydantic, https only, clear errors)
* ``events``: validation and the exact JSON body (pure)
* ``signing``: the signature, and ``verify_signature`` for receivers (pure)
* ``retry``: what is retried and how long to wait (pure)
* ``sender``: one signed HTTP attempt (aiohttp)
* ``store`` / ``sqlite_store``: parked deliveries and dead letters, in memory or durable
* ``dispatcher``: per-subscription lanes, ordering, overflow, shutdown, re-drive
* ``lane`` / ``lane_worker``: a lane's state, and the worker that delivers it in order
* ``fan_out``: an event's deliveries, one per matching subscription, and their order keys
"""

from crm_bridge.webhooks.dispatcher import WebhookDispatcher
from crm_bridge.webhooks.errors import (
    DeliveryStoreError,
    DispatcherNotRunning,
    InvalidEvent,
    SignatureMismatch,
    SignatureMissing,
    TimestampOutOfTolerance,
    WebhookError,
    WebhookSignatureError,
)
from crm_bridge.webhooks.events import EventLimits
from crm_bridge.webhooks.lane import LaneStatus
from crm_bridge.webhooks.retry import DeliveryPolicy
from crm_bridge.webhooks.signing import (
    HEADER_DELIVERY,
    HEADER_EVENT,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    compute_signature,
    verify_signature,
)
from crm_bridge.webhooks.sqlite_store import SqliteDeliveryStore
from crm_bridge.webhooks.store import DeadLetter, Delivery, DeliveryStore, InMemoryDeliveryStore
from crm_bridge.webhooks.subscriptions import (
    Subscription,
    SubscriptionRegistry,
    load_subscriptions,
    parse_subscriptions,
)

__all__ = [
    "HEADER_DELIVERY",
    "HEADER_EVENT",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "DeadLetter",
    "Delivery",
    "DeliveryPolicy",
    "DeliveryStore",
    "DeliveryStoreError",
    "DispatcherNotRunning",
    "EventLimits",
    "InMemoryDeliveryStore",
    "InvalidEvent",
    "LaneStatus",
    "SignatureMismatch",
    "SignatureMissing",
    "SqliteDeliveryStore",
    "Subscription",
    "SubscriptionRegistry",
    "TimestampOutOfTolerance",
    "WebhookDispatcher",
    "WebhookError",
    "WebhookSignatureError",
    "compute_signature",
    "load_subscriptions",
    "parse_subscriptions",
    "verify_signature",
]
