"""When to retry a delivery and how long to wait (pure).

* 2xx: delivered.
* network error, timeout, 5xx, 429: retry, after an exponential back-off with jitter, or after
  ``Retry-After`` when the receiver sent one and it is longer (capped at
  ``max_retry_after_s``).
* any other status (4xx, and 3xx: redirects are not followed, a signed body is never sent
  to a host nobody subscribed): rejected at once, no retry, straight to the dead letters.

After ``max_attempts`` attempts a retryable failure is dead-lettered too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum

__all__ = [
    "AttemptResult",
    "DeliveryPolicy",
    "Outcome",
    "backoff_delay",
    "classify_status",
    "parse_retry_after",
]


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: Outcome
    detail: str  # "HTTP 503: <start of the body>", "network error: ..."
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 8
    base_delay_s: float = 1.0
    max_delay_s: float = 300.0
    max_retry_after_s: float = 900.0
    timeout_s: float = 10.0  # whole attempt: connect, send, response head and first bytes
    connect_timeout_s: float = 5.0
    queue_capacity: int = 1000  # per subscription; beyond it deliveries are parked on disk

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.queue_capacity < 1:
            raise ValueError("max_attempts and queue_capacity must be at least 1")
        if not 0 < self.base_delay_s <= self.max_delay_s:
            raise ValueError("need 0 < base_delay_s <= max_delay_s")
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0 or self.max_retry_after_s < 0:
            raise ValueError("timeouts must be positive and max_retry_after_s >= 0")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True, float("²") fails
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def classify_status(
    status: int, retry_after: str | None, body_start: str, now: float
) -> AttemptResult:
    detail = f"HTTP {status}" + (f": {body_start}" if body_start else "")
    if 200 <= status < 300:
        return AttemptResult(Outcome.DELIVERED, detail)
    if status == 429 or status >= 500:
        return AttemptResult(Outcome.RETRY, detail, parse_retry_after(retry_after, now))
    if 300 <= status < 400:
        detail += " (redirects are not followed: update the subscription URL)"
    return AttemptResult(Outcome.REJECTED, detail)


def backoff_delay(
    policy: DeliveryPolicy, attempt: int, retry_after_s: float | None, rng: random.Random
) -> float:
    """Wait before attempt ``attempt + 1``: half the capped exponential plus random jitter
    up to the other half ("equal jitter": never zero, spreads retries), or Retry-After."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2.0 ** min(attempt - 1, 60))
    delay = ceiling / 2 + rng.uniform(0, ceiling / 2)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, policy.max_retry_after_s))
    return delay
