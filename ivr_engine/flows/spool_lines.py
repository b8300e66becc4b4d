"""The call spool's line format: one ``CallWrite`` per line, as compact JSON, and back.

A spool line is checked whole when read (UTF-8, JSON, every field's type, text the
database can take): a line that fails is rejected on its own (``calls.rejected.jsonl``),
never the end of the writer task nor of the lines around it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from ivr_engine.domain.models import KnownField
from ivr_engine.flows.call_record import CallWrite
from ivr_engine.ports import NewTimelineEvent


def write_to_json(write: CallWrite) -> str:
    def encode(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        return str(value)  # kept readable: a value no JSON can carry is never the call's loss

    payload = {
        "customer_id": write.customer_id,
        "phone": write.phone,
        "events": [asdict(e) for e in write.events],
        "fields": [asdict(f) for f in write.fields],
    }
    return json.dumps(payload, default=encode, separators=(",", ":"))


def write_from_json(line: str) -> CallWrite:
    """The call of one spool line; ``ValueError`` (or ``KeyError``/``TypeError``) when any
    part of it is not what ``write_to_json`` makes."""
    raw = json.loads(line)
    events = tuple(_event(e) for e in _list(raw["events"]))
    fields = tuple(_field(f) for f in _list(raw["fields"]))
    return CallWrite(_optional(raw["customer_id"]), _optional(raw["phone"]), events, fields)


def parse_spool_lines(lines: Iterable[bytes]) -> tuple[list[CallWrite], list[bytes]]:
    """The calls of the spool's lines, and the lines that are not calls (as they were)."""
    parsed: list[CallWrite] = []
    rejected: list[bytes] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            parsed.append(write_from_json(line.decode("utf-8")))
        except (ValueError, KeyError, TypeError, AttributeError):  # UnicodeError: ValueError
            rejected.append(line.rstrip(b"\n"))
    return parsed, rejected


def _event(raw: Any) -> NewTimelineEvent:
    data = raw["data"]
    if not isinstance(data, dict):
        raise TypeError("event data is not an object")
    json.dumps(data, ensure_ascii=False).encode("utf-8")  # no lone surrogate anywhere
    return NewTimelineEvent(
        event_id=_text(raw["event_id"]),
        customer_id=_text(raw["customer_id"]),
        occurred_at=_time(raw["occurred_at"]),
        channel=_text(raw["channel"]),
        event_type=_text(raw["event_type"]),
        intent=_optional(raw["intent"]),
        case_id=_optional(raw["case_id"]),
        data=data,
    )


def _field(raw: Any) -> KnownField:
    verified = raw.get("verified", False)
    if not isinstance(verified, bool):
        raise TypeError("verified is not a boolean")
    return KnownField(
        name=_text(raw["name"]),
        value=_text(raw["value"]),
        source_channel=_text(raw["source_channel"]),
        updated_at=_time(raw["updated_at"]),
        verified=verified,
    )


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return value


def _optional(value: Any) -> str | None:
    return None if value is None else _text(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{type(value).__name__} where text was expected")
    value.encode("utf-8")  # a lone surrogate (JSON "\ud800") cannot be stored
    return value


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(_text(value))
