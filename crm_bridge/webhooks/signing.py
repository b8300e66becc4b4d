"""Webhook signatures: what the sender computes and what a receiver checks (pure).

The signed string is the decimal unix timestamp, a dot, and the raw request body, byte for
byte: ``f"{timestamp}.{raw_body}"``. The signature is ``v1=`` followed by the lowercase hex
HMAC-SHA256 of that string under the subscription's secret (UTF-8). Because the timestamp is
signed, a receiver that rejects timestamps outside a tolerance window rejects replays of old
deliveries; dedupe on the body's ``id`` (signed) covers replays inside the window, not on
``X-Seed-Delivery``, which the signature does not cover.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

from crm_bridge.webhooks.errors import SignatureMismatch, SignatureMissing, TimestampOutOfTolerance

__all__ = [
    "HEADER_DELIVERY",
    "HEADER_EVENT",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "compute_signature",
    "delivery_headers",
    "verify_signature",
]

HEADER_EVENT = "X-Seed-Event"
HEADER_DELIVERY = "X-Seed-Delivery"
HEADER_TIMESTAMP = "X-Seed-Timestamp"
HEADER_SIGNATURE = "X-Seed-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300.0
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256(secret, f"{timestamp}.{body}")."""
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def delivery_headers(
    secret: str, *, event_type: str, delivery_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The headers of one delivery attempt (signed afresh at each attempt)."""
    return {
        "Content-Type": "application/json",
        HEADER_EVENT: event_type,
        HEADER_DELIVERY: delivery_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: f"{SCHEME}={compute_signature(secret, timestamp, body)}",
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    raise SignatureMissing(f"missing header {name}")


def _candidates(header: str) -> list[str]:
    """The ``v1=`` entries of ``X-Seed-Signature`` (comma-separated; other schemes ignored)."""
    found = []
    for entry in header.split(","):
        scheme, _, value = entry.strip().partition("=")
        if scheme == SCHEME and _HEX_SHA256.fullmatch(value):
            found.append(value)
    if not found:
        raise SignatureMissing(f"{HEADER_SIGNATURE} has no '{SCHEME}=<64 hex>' entry")
    return found


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise a ``WebhookSignatureError`` unless the delivery is authentic and fresh.

    ``headers`` is looked up case-insensitively; ``body`` must be the raw bytes received
    (before any JSON parsing); ``now`` is unix seconds. Timestamps more than ``tolerance_s``
    in the past (replays) or in the future are rejected. Compares in constant time.
    """
    raw_timestamp = _header(headers, HEADER_TIMESTAMP).strip()
    if not _TIMESTAMP.fullmatch(raw_timestamp):
        raise SignatureMissing(f"{HEADER_TIMESTAMP} must be unix seconds, got {raw_timestamp!r}")
    timestamp = int(raw_timestamp)
    if abs(now - timestamp) > tolerance_s:
        raise TimestampOutOfTolerance(
            f"{HEADER_TIMESTAMP} {timestamp} is {now - timestamp:+.0f} s from now "
            f"(tolerance {tolerance_s:g} s): stale, replayed or clock skew"
        )
    expected = compute_signature(secret, timestamp, body).encode("ascii")
    matched = False
    for candidate in _candidates(_header(headers, HEADER_SIGNATURE)):
        matched |= hmac.compare_digest(expected, candidate.encode("ascii"))
    if not matched:
        raise SignatureMismatch("signature does not match the body and timestamp")
