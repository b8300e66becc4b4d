"""Is a spooled call already on the timeline, or is its event id another call's? Pure.

A call's event id is ``voice:<uniqueid>~<nonce>:ivr`` (``call_record.call_event_id``), so a
replay of the same record (the spool after an outage) finds its own event there: the same
content, stored once. Spool lines written before the nonce hold ``voice:<uniqueid>:ivr``,
which two PBXs without their own ``systemname`` can share: an event id already stored with
other content is another call's (a collision, not a replay). That call gets a fresh key
(``rekeyed``): stored on its own, never merged into the other caller.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import NamedTuple

from ivr_engine.flows.call_record import EVENT_ID_MAX, CallWrite
from ivr_engine.ports import NewTimelineEvent, StoredCallEvent


class Resolved(NamedTuple):
    writes: list[CallWrite]  # the batch to write: replays on their customer, collisions rekeyed
    collisions: list[tuple[str, str]]  # (event id found taken, the fresh one), to log


def same_event(ours: NewTimelineEvent, stored: StoredCallEvent) -> bool:
    """The stored event is this one written before (its customer aside: it may have been
    merged since, or found by phone on the first write)."""
    return (
        _utc(ours.occurred_at) == _utc(stored.occurred_at)
        and (ours.channel, ours.event_type, ours.intent, ours.case_id)
        == (stored.channel, stored.event_type, stored.intent, stored.case_id)
        and json.loads(json.dumps(dict(ours.data))) == dict(stored.data)
    )


def fresh_event_id(event_id: str) -> str:
    """``event_id`` with a random part added before its kind (``voice:<key>~r<hex>:ivr``),
    within the column's length."""
    head, sep, kind = event_id.rpartition(":")
    if not sep:
        head, kind = event_id, ""
    suffix = f"~r{secrets.token_hex(8)}"
    room = EVENT_ID_MAX - len(suffix) - len(sep) - len(kind)
    return f"{head[:room]}{suffix}{sep}{kind}"


def rekeyed(write: CallWrite) -> CallWrite:
    """``write`` under fresh event ids (so also a fresh new customer, derived from them)."""
    events = tuple(replace(e, event_id=fresh_event_id(e.event_id)) for e in write.events)
    return replace(write, events=events)


def resolve_stored(batch: Sequence[CallWrite], stored: Mapping[str, StoredCallEvent]) -> Resolved:
    """Each write of ``batch`` as it should be written, given the events already ``stored``
    under its ids: all its own (a replay) → on the customer that has them (events skipped,
    fields written again, newest kept); any another call's, or an id an earlier write of
    the batch takes with other content → rekeyed; none → as it is."""
    out: list[CallWrite] = []
    collisions: list[tuple[str, str]] = []
    taken: dict[str, NewTimelineEvent] = {}
    for write in batch:
        found = [stored.get(e.event_id) for e in write.events]
        clash = any(
            (s is not None and not same_event(e, s))
            or (e.event_id in taken and taken[e.event_id] != e)
            for e, s in zip(write.events, found, strict=True)
        )
        if clash:
            fresh = rekeyed(write)
            collisions += [
                (a.event_id, b.event_id) for a, b in zip(write.events, fresh.events, strict=True)
            ]
            write = fresh
        elif found and all(s is not None for s in found):
            owner = found[0].customer_id if found[0] is not None else None
            write = replace(write, customer_id=owner)
        taken.update((e.event_id, e) for e in write.events)
        out.append(write)
    return Resolved(out, collisions)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
