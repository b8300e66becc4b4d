"""Pure helpers of the raw-driver write path (``fast_writer.py``): a batch of calls as rows
or column arrays, and the plan for creating a batch of callers. No I/O."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from ivr_engine.domain.models import KnownField
from ivr_engine.ports import CustomerWrite
from ivr_engine.timeline.timestamps import sqlite_timestamp, to_utc

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class EventRow(NamedTuple):
    """A timeline event already in row form (``FastCallWriter.write_rows``): ``data`` is the
    JSON text of its data object, written as it is (the call bridge makes it with orjson
    from what the bus carried; no ``NewTimelineEvent`` and no second encoding per event)."""

    event_id: str
    customer_id: str
    occurred_at: datetime  # aware
    channel: str
    event_type: str
    intent: str | None
    case_id: str | None
    data: str


def json_text(data: object) -> str:
    """``json.dumps(data, separators=(",", ":"), ensure_ascii=False)``, with the encoder
    made once (``dumps`` builds one per call with these arguments)."""
    return _JSON.encode(data)


def sqlite_time_text(value: datetime) -> str:
    """``sqlite_timestamp(value)`` (``%Y-%m-%d %H:%M:%S.%f`` in UTC) with ``isoformat``,
    about a third of ``strftime``'s CPU; ``strftime`` does not pad years before 1000."""
    utc = to_utc(value)
    if utc.year < 1000:
        return sqlite_timestamp(utc)
    return utc.replace(tzinfo=None).isoformat(" ", "microseconds")


def newest_fields(fields: Sequence[KnownField]) -> list[KnownField]:
    newest: dict[str, KnownField] = {}
    for f in fields:
        if f.name not in newest or f.updated_at > newest[f.name].updated_at:
            newest[f.name] = f
    return sorted(newest.values(), key=lambda f: f.name)


def group_owners(rows: Sequence[Any]) -> dict[str, list[str]]:
    owners: dict[str, list[str]] = {}
    for phone, customer_id in rows:
        owners.setdefault(phone, []).append(customer_id)
    return {phone: sorted(ids) for phone, ids in owners.items()}


CUSTOMER_IDS = uuid.UUID("5b0e8e0c-1d2a-4c3e-9f47-6a2d1c9b7e01")  # uuid5 namespace


def plan_creation(
    phones: Sequence[str | None], owners: dict[str, list[str]], keys: Sequence[str | None] = ()
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(the customer of each entry, customers to insert, (customer, phone) to insert).
    A phone listed twice gets one customer; ``None`` always gets its own. A new customer's
    id derives from the entry's key when it has one (``uuid5``; the recorder's key is the
    call's event id): a retried write (inserting if absent) finds the customer it made
    before instead of making another."""
    keys = list(keys) or [None] * len(phones)
    ids: list[str] = []
    new: list[str] = []
    identities: list[tuple[str, str]] = []
    chosen: dict[str, str] = {}
    for phone, key in zip(phones, keys, strict=True):
        if phone is not None and phone in chosen:
            ids.append(chosen[phone])
            continue
        found = owners.get(phone, []) if phone is not None else []
        if len(found) == 1:
            customer_id = found[0]
        else:
            customer_id = str(uuid.uuid5(CUSTOMER_IDS, key) if key else uuid.uuid4())
            new.append(customer_id)
            if phone is not None:
                identities.append((customer_id, phone))
        if phone is not None:
            chosen[phone] = customer_id
        ids.append(customer_id)
    return ids, new, identities


def pg_columns(batch: Sequence[CustomerWrite]) -> list[list[Any]]:
    """The batch as 14 column arrays: 8 for events, 6 for fields (by customer as written;
    the statement maps customers to their survivors and keeps each field's newest value)."""
    events: list[list[Any]] = [[] for _ in range(8)]
    fields: list[list[Any]] = [[] for _ in range(6)]
    for write in batch:
        for e in write.events:
            row: tuple[Any, ...] = (
                e.event_id, write.customer_id, to_utc(e.occurred_at), e.channel, e.event_type,
                e.intent, e.case_id, json_text(dict(e.data)),
            )  # fmt: skip
            for column, value in zip(events, row, strict=True):
                column.append(value)
        for f in write.fields:
            row = (
                write.customer_id, f.name, f.value, f.source_channel, to_utc(f.updated_at),
                bool(f.verified),
            )  # fmt: skip
            for column, value in zip(fields, row, strict=True):
                column.append(value)
    return events + fields


def pg_row_columns(rows: Sequence[EventRow]) -> list[list[Any]]:
    """``pg_columns`` for rows already in row form: 8 event arrays, 6 empty field arrays."""
    events: list[list[Any]] = [[] for _ in range(8)]
    for r in rows:
        values = (r.event_id, r.customer_id, to_utc(r.occurred_at), r.channel, r.event_type,
                  r.intent, r.case_id, r.data)  # fmt: skip
        for column, value in zip(events, values, strict=True):
            column.append(value)
    return events + [[] for _ in range(6)]


def sqlite_event_rows(
    rows: Sequence[EventRow], owners: dict[str, str], now: datetime
) -> list[tuple[Any, ...]]:
    """``row_tuples``' event rows (SQLite encoders) for rows already in row form, in their
    order; rows of customers not in ``owners`` are left out."""
    recorded = sqlite_time_text(now)
    out: list[tuple[Any, ...]] = []
    for r in rows:
        owner = owners.get(r.customer_id)
        if owner is not None:
            out.append((r.event_id, owner, sqlite_time_text(r.occurred_at), recorded, r.channel,
                        r.event_type, r.intent, r.case_id, r.data))  # fmt: skip
    return out


def row_tuples(
    batch: Sequence[CustomerWrite],
    owners: dict[str, str],
    now: datetime,
    timestamp: Any,
    encode: Any,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    events: list[tuple[Any, ...]] = []
    fields: list[tuple[Any, ...]] = []
    recorded = timestamp(now)
    for write in batch:
        owner = owners.get(write.customer_id)
        if owner is None:
            continue
        for e in write.events:
            events.append(
                (
                    e.event_id,
                    owner,
                    timestamp(e.occurred_at),
                    recorded,
                    e.channel,
                    e.event_type,
                    e.intent,
                    e.case_id,
                    encode(dict(e.data)),
                )
            )
        for f in newest_fields(write.fields):
            verified = bool(f.verified)
            fields.append(
                (owner, f.name, f.value, f.source_channel, timestamp(f.updated_at), verified)
            )
    return events, fields
