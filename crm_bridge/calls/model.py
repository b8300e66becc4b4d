"""The bridge's vocabulary: call event kinds, ``NormalisedEvent``, and its two encodings.

A ``NormalisedEvent`` is what ``normalise`` makes of AMI events: one fact about one call,
keyed by the call id (the caller channel's ``Uniqueid``, which is the call's ``Linkedid``)
and identified by ``event_id``, derived only from (source, call id, kind, ordinal of that
kind within the call). The same AMI events normalised again give the same ids, so a replay,
a republished outbox row or a redelivered bus entry is skipped by the timeline
(``event_id`` is its idempotency key). ``seq`` numbers a call's events in emission order.

On the bus an event is a flat JSON object (``to_bus`` / ``from_bus``); on the timeline it is
a ``NewTimelineEvent`` on channel ``voice`` (``to_timeline``), which the consumer hands to
the raw writer as a row (``timeline_row``: the same event, its data already JSON text).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from ivr_engine.ports import NewTimelineEvent
from ivr_engine.timeline.fast_rows import EventRow

__all__ = [
    "MAX_INTENT",
    "TIMELINE_CHANNEL",
    "CallEventKind",
    "InvalidBusEvent",
    "NormalisedEvent",
    "event_key",
]

TIMELINE_CHANNEL = "voice"


class CallEventKind(StrEnum):
    STARTED = "call.started"  # Newchannel of an inbound caller channel (or adopted on resync)
    IVR_FALLBACK = "call.ivr_fallback"  # UserEvent IvrFallback: engine unreachable, static menu
    IVR_ROUTED = "call.ivr_routed"  # UserEvent IvrRouted: the IVR's choice (intent, target)
    OVERFLOWED = "call.overflowed"  # UserEvent IvrOverflow: no agent, to the overflow target
    TRANSFERRED = "call.transferred"  # UserEvent IvrAgentDial, or DialBegin from the caller
    ANSWERED_BY_AGENT = "call.answered_by_agent"  # DialEnd ANSWER, or BridgeEnter with caller
    HELD = "call.held"  # Hold on a channel of the call
    RESUMED = "call.resumed"  # Unhold (with held_ms)
    ENDED = "call.ended"  # Hangup of the caller channel (cause, ring/talk/hold/total ms)


_KINDS = {kind.value: kind for kind in CallEventKind}  # a dict lookup, not Enum.__call__


class InvalidBusEvent(ValueError):
    """A bus entry that is not a call event of this bridge (kept by the bus, never written)."""


MAX_EVENT_ID = 200  # timeline_events.event_id
MAX_INTENT = 64  # timeline_events.intent


def event_key(
    source: str, call_id: str, kind: CallEventKind, ordinal: int, *, prefix: str = "ami"
) -> str:
    """The idempotency key: ``<prefix>:<source>:<call id>:<kind>:<n>`` (n-th such event,
    from 1; prefix ``ami`` or ``esl``). A call id too long for the column (Asterisk allows
    150 characters) is replaced by its SHA-1, so the key stays deterministic and fits."""
    key = f"{prefix}:{source}:{call_id}:{kind.value}:{ordinal}"
    if len(key) > MAX_EVENT_ID:
        digest = hashlib.sha1(call_id.encode(), usedforsecurity=False).hexdigest()
        key = f"{prefix}:{source}:sha1-{digest}:{kind.value}:{ordinal}"
    return key


@dataclass(frozen=True, slots=True)
class NormalisedEvent:
    event_id: str
    call_id: str  # the caller channel's Uniqueid (= Linkedid): the bus partition key
    kind: CallEventKind
    seq: int  # 1, 2, ... per call, in emission order
    occurred_at: datetime  # aware UTC
    caller: str | None  # caller ID in E.164, None when withheld or not a number
    intent: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_bus(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "partition_key": self.call_id,
            "kind": self.kind.value,
            "seq": self.seq,
            "occurred_at": self.occurred_at.isoformat(),
            "caller": self.caller,
            "intent": self.intent,
            "data": dict(self.data),
        }

    def to_bus_json(self) -> str:
        """``to_bus`` as the bus carries it: compact UTF-8 JSON, the same text as
        ``encode_event`` gives (orjson: the values are strings, ints, booleans, None and
        lists or dicts of them, which it writes exactly like ``json.dumps``, and the time,
        which it writes as ``isoformat()`` does, at a seventh of its CPU)."""
        data = self.data if type(self.data) is dict else dict(self.data)
        doc = {
            "event_id": self.event_id,
            "partition_key": self.call_id,
            "kind": self.kind.value,
            "seq": self.seq,
            "occurred_at": self.occurred_at,
            "caller": self.caller,
            "intent": self.intent,
            "data": data,
        }
        try:
            return orjson.dumps(doc).decode()
        except orjson.JSONEncodeError:  # a tzinfo orjson does not know: the text by hand
            doc["occurred_at"] = self.occurred_at.isoformat()
            return orjson.dumps(doc).decode()

    @classmethod
    def from_bus(cls, doc: Mapping[str, Any]) -> NormalisedEvent:
        """The inverse of ``to_bus``; ``InvalidBusEvent`` names what is wrong."""
        try:
            occurred_at = datetime.fromisoformat(doc["occurred_at"])
            event = cls(
                event_id=_text(doc, "event_id"),
                call_id=_text(doc, "partition_key"),
                kind=_KINDS[doc["kind"]],
                seq=int(doc["seq"]),
                occurred_at=occurred_at if occurred_at.tzinfo else occurred_at.replace(tzinfo=UTC),
                caller=_optional_text(doc, "caller"),
                intent=_optional_text(doc, "intent"),
                data=dict(doc["data"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidBusEvent(f"not a call event: {exc!r}: {str(dict(doc))[:200]}") from exc
        return event

    def to_timeline(self, customer_id: str) -> NewTimelineEvent:
        return NewTimelineEvent(
            event_id=self.event_id,
            customer_id=customer_id,
            occurred_at=self.occurred_at,
            channel=TIMELINE_CHANNEL,
            event_type=self.kind.value,
            intent=self.intent,
            data={"call_id": self.call_id, "seq": self.seq, "caller": self.caller, **self.data},
        )

    def timeline_row(self, customer_id: str) -> EventRow:
        """``to_timeline`` as the raw writer's row: the data object as compact JSON text
        (orjson: the same text as the timeline's ``json_text`` for what the bus carries,
        strings, ints, booleans, None and lists or dicts of them)."""
        data = {"call_id": self.call_id, "seq": self.seq, "caller": self.caller, **self.data}
        return EventRow(
            self.event_id, customer_id, self.occurred_at, TIMELINE_CHANNEL, self.kind.value,
            self.intent, None, orjson.dumps(data).decode(),
        )  # fmt: skip


def _text(doc: Mapping[str, Any], key: str) -> str:
    value = doc[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


def _optional_text(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string or null")
    return value
