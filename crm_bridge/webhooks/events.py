"""Turn a published event into the exact JSON body every subscriber receives (pure).

Everything is checked here, once, before any queue sees the event: the event type, and that
``data`` is a JSON object a strict receiver can parse (no NaN or infinities, string keys only,
no lone surrogates, integers within JavaScript's safe range, bounded nesting, size and node
count). A bad event raises ``InvalidEvent`` naming the path of the first problem.

Body (UTF-8, compact, keys sorted)::

    {"data": {...}, "id": "evt_...", "occurred_at": "2025-06-01T12:00:00Z", "type": "call.ended"}
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from crm_bridge.webhooks.errors import InvalidEvent

__all__ = ["EVENT_TYPE", "EventBody", "EventLimits", "encode_event"]

EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,39}(\.[a-z][a-z0-9_]{0,39}){1,3}")
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,80}")
_SAFE_INT = 2**53 - 1


@dataclass(frozen=True, slots=True)
class EventLimits:
    max_body_bytes: int = 64 * 1024
    max_depth: int = 16
    max_nodes: int = 5000


@dataclass(frozen=True, slots=True)
class EventBody:
    event_id: str
    event_type: str
    body: bytes


def _scalar_problem(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if abs(value) <= _SAFE_INT else "integer outside ±2^53-1 (send a string)"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not valid JSON"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "string with a lone surrogate (not valid UTF-8)"
        return None
    return f"{type(value).__name__} is not a JSON type (use dict, list, str, number, bool, None)"


def _check_data(data: object, limits: EventLimits) -> None:
    """Walk ``data`` iteratively (no recursion), failing fast on the first problem."""
    if not isinstance(data, Mapping):
        raise InvalidEvent(f"data must be a JSON object (a mapping), got {type(data).__name__}")
    stack: list[tuple[str, object, int]] = [("data", data, 1)]
    nodes, text_bytes = 0, 0
    while stack:
        path, value, depth = stack.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            raise InvalidEvent(f"data has more than {limits.max_nodes} values")
        if depth > limits.max_depth:
            raise InvalidEvent(f"{path}: nested deeper than {limits.max_depth} (or circular)")
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidEvent(f"{path}: key {key!r} is not a string")
                text_bytes += len(key)
                stack.append((f"{path}.{key}", item, depth + 1))
        elif isinstance(value, list | tuple):
            stack.extend((f"{path}[{i}]", item, depth + 1) for i, item in enumerate(value))
        else:
            problem = _scalar_problem(value)
            if problem:
                raise InvalidEvent(f"{path}: {problem}")
            text_bytes += len(value) if isinstance(value, str) else 0
        if text_bytes > limits.max_body_bytes:
            raise InvalidEvent(f"data is larger than {limits.max_body_bytes} bytes")


def encode_event(
    event_type: str,
    data: Mapping[str, object],
    *,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    limits: EventLimits = EventLimits(),
) -> EventBody:
    """Validate and encode one event; raise ``InvalidEvent`` with a precise reason."""
    if not isinstance(event_type, str) or not EVENT_TYPE.fullmatch(event_type):
        raise InvalidEvent(
            f"event type {event_type!r}: use dotted lowercase names like 'call.ended'"
        )
    if event_id is not None and not _EVENT_ID.fullmatch(event_id):
        raise InvalidEvent(f"event {event_type}: id {event_id!r}: use 1-80 of [A-Za-z0-9_.:-]")
    if occurred_at is not None and occurred_at.tzinfo is None:
        raise InvalidEvent(f"event {event_type}: occurred_at must be timezone-aware")
    try:
        _check_data(data, limits)
    except InvalidEvent as exc:
        raise InvalidEvent(f"event {event_type}: {exc}") from None
    event_id = event_id or f"evt_{uuid.uuid4().hex}"
    when = (occurred_at or datetime.now(UTC)).astimezone(UTC)
    envelope = {
        "data": data,
        "id": event_id,
        "occurred_at": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "type": event_type,
    }
    try:
        text = json.dumps(
            envelope, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:  # e.g. a Mapping that is not a dict
        raise InvalidEvent(f"event {event_type}: data is not JSON-encodable: {exc}") from exc
    body = text.encode("utf-8")
    if len(body) > limits.max_body_bytes:
        raise InvalidEvent(
            f"event {event_type}: body is {len(body)} bytes, limit {limits.max_body_bytes}"
        )
    return EventBody(event_id=event_id, event_type=event_type, body=body)
