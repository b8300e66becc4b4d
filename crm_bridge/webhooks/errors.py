"""Errors raised by the outbound webhooks.

Publishing refuses bad events at once (``InvalidEvent``): a hostile or oversized payload never
reaches a queue. Delivery failures are not exceptions: they are retried, then dead-lettered.
"""

from __future__ import annotations

from ivr_engine.domain.errors import IvrEngineError

__all__ = [
    "DeliveryStoreError",
    "DispatcherNotRunning",
    "InvalidEvent",
    "SignatureMismatch",
    "SignatureMissing",
    "TimestampOutOfTolerance",
    "WebhookError",
    "WebhookSignatureError",
]


class WebhookError(IvrEngineError):
    """Base class for webhook errors."""


class InvalidEvent(WebhookError, ValueError):
    """``publish`` was given an event that cannot be sent (bad type, not JSON, too big)."""


class DeliveryStoreError(WebhookError):
    """The durable delivery store failed (disk full, file locked, corrupt)."""


class DispatcherNotRunning(WebhookError):
    """``publish`` or ``redrive`` before ``start()`` or after ``stop()``."""


class WebhookSignatureError(WebhookError):
    """A received webhook does not verify; answer 401 and do not act on it."""


class SignatureMissing(WebhookSignatureError):
    """A signing header is absent or not in the documented format."""


class TimestampOutOfTolerance(WebhookSignatureError):
    """``X-Seed-Timestamp`` is too old (a replay) or too far in the future."""


class SignatureMismatch(WebhookSignatureError):
    """No ``v1=`` signature matches the body and timestamp under this secret."""
