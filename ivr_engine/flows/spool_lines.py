"""The call spool's line format: one ``CallWrite`` per line, as compact JSON, and back."""

from __future__ import annotations

import json
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
        raise TypeError(f"cannot encode {type(value).__name__}")

    payload = {
        "customer_id": write.customer_id,
        "phone": write.phone,
        "events": [asdict(e) for e in write.events],
        "fields": [asdict(f) for f in write.fields],
    }
    return json.dumps(payload, default=encode, separators=(",", ":"))


def write_from_json(line: str) -> CallWrite:
    raw = json.loads(line)
    events = tuple(
        NewTimelineEvent(**{**e, "occurred_at": datetime.fromisoformat(e["occurred_at"])})
        for e in raw["events"]
    )
    fields = tuple(
        KnownField(**{**f, "updated_at": datetime.fromisoformat(f["updated_at"])})
        for f in raw["fields"]
    )
    return CallWrite(raw["customer_id"], raw["phone"], events, fields)


def parse_spool_lines(text: str) -> tuple[list[CallWrite], list[str]]:
    parsed: list[CallWrite] = []
    rejected: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            parsed.append(write_from_json(line))
        except (ValueError, KeyError, TypeError):
            rejected.append(line)
    return parsed, rejected
