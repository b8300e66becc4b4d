"""Response shapes (TypedDicts: checked by mypy, documented in OpenAPI) and their builders."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from typing_extensions import TypedDict

from ivr_engine.api.json_values import portable_json
from ivr_engine.domain.models import KnownField
from ivr_engine.ports import Customer, Identity, StoredEvent, TimelinePage


class IdentityJson(TypedDict):
    kind: str
    value: str


class KnownFieldJson(TypedDict):
    value: str
    source_channel: str
    updated_at: str
    verified: bool


class NamedFieldJson(KnownFieldJson):
    name: str


class CustomerJson(TypedDict):
    customer_id: str
    display_name: str | None
    identities: list[IdentityJson]
    fields: dict[str, KnownFieldJson]
    created_at: str
    updated_at: str
    merged_into: str | None


class CustomerListJson(TypedDict):
    customers: list[CustomerJson]


class EventJson(TypedDict):
    seq: int
    event_id: str
    customer_id: str
    occurred_at: str
    recorded_at: str
    channel: str
    event_type: str
    intent: str | None
    case_id: str | None
    data: dict[str, Any]


class TimelineJson(TypedDict):
    events: list[EventJson]
    next_before: int | None


class EventResultJson(TypedDict):
    inserted: bool
    event_id: str
    customer_id: str
    customer_created: bool


class ErrorBodyJson(TypedDict):
    code: str
    message: str


class ErrorJson(TypedDict):
    error: ErrorBodyJson


class HealthJson(TypedDict):
    status: str


def timestamp(value: datetime) -> str:
    return value.isoformat()


def identity_json(identity: Identity) -> IdentityJson:
    return {"kind": identity.kind, "value": identity.value}


def known_field_json(known: KnownField) -> KnownFieldJson:
    return {
        "value": known.value,
        "source_channel": known.source_channel,
        "updated_at": timestamp(known.updated_at),
        "verified": known.verified,
    }


def named_field_json(known: KnownField) -> NamedFieldJson:
    return {"name": known.name, **known_field_json(known)}


def customer_json(customer: Customer) -> CustomerJson:
    return {
        "customer_id": customer.customer_id,
        "display_name": customer.display_name,
        "identities": [identity_json(i) for i in customer.identities],
        "fields": {name: known_field_json(f) for name, f in customer.known_fields.items()},
        "created_at": timestamp(customer.created_at),
        "updated_at": timestamp(customer.updated_at),
        "merged_into": customer.merged_into,
    }


def event_json(event: StoredEvent) -> EventJson:
    return {
        "seq": event.seq,
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "occurred_at": timestamp(event.occurred_at),
        "recorded_at": timestamp(event.recorded_at),
        "channel": event.channel,
        "event_type": event.event_type,
        "intent": event.intent,
        "case_id": event.case_id,
        "data": portable_json(dict(event.data)),  # the same on SQLite and PostgreSQL
    }


def timeline_json(page: TimelinePage) -> TimelineJson:
    return {"events": [event_json(e) for e in page.events], "next_before": page.next_before}
