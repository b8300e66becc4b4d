"""What one call did, built up as the call goes, then turned into timeline writes.

Pure: ``to_write`` turns a finished record into the events and known fields to store.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ivr_engine.domain.models import CallOutcome, IdentifiedBy, KnownField, MenuDecision
from ivr_engine.ports import NewTimelineEvent

CALL_EVENT_TYPE = "call.ivr"
# The channel variable the routing sets to the call's key, for the AMI tracker (manager.conf
# ``channelvars``), which keys its agent events by it. Not in ``variables.py``: no dialplan
# reads it (a value from an earlier pass routes nothing: the routing sets it again before
# any agent is dialled), so the dialplans need not clear it as they clear those.
CALL_KEY_VARIABLE = "IVR_CALL_KEY"
EVENT_ID_MAX = 200  # timeline_events.event_id is VARCHAR(200)


def new_call_nonce() -> str:
    """A call's own random part of its timeline key (64 bits, hex)."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A call as the switch announced it (built by the telephony adapter).

    ``call_id`` is the switch's id (Asterisk uniqueid, FreeSWITCH UUID): what the switch's
    own events (AMI, ESL) and the agent reservations are matched by. It is not unique
    across switches (Asterisk's is ``<epoch>.<counter>`` without ``systemname``), so the
    call's timeline identity is ``call_key``: the switch's id plus ``nonce``, chosen once
    when the call starts and carried in the record (a spooled call replays its key)."""

    call_id: str  # Asterisk uniqueid / FreeSWITCH UUID: correlation with the switch
    caller_id: str | None  # raw caller ID as received
    channel_name: str
    menu: str
    started_at: datetime
    received: float = 0.0  # time.perf_counter() when the switch's request was in; 0: unknown
    caller_withheld: bool = False  # the caller asked not to show their number (restricted)
    nonce: str = field(default_factory=new_call_nonce)

    @property
    def call_key(self) -> str:
        """``<call id>~<nonce>``: the call's identity on the timeline (its event ids, the
        id of a first-time caller's new customer, its continue-by-SMS case)."""
        return f"{self.call_id}~{self.nonce}"


@dataclass(frozen=True, slots=True)
class RouteResult:
    """Where the call goes after the IVR: a reserved agent, or an overflow target."""

    target: str  # "agent:<id>", "queue:<name>" or "callback"
    agent_id: str | None = None
    endpoint: str | None = None  # the agent's dial string
    reasons: tuple[str, ...] = ()
    ring_timeout_s: float | None = None  # how long the dialplan rings the agent


@dataclass(slots=True)
class CallRecord:
    call: IncomingCall
    phone: str | None = None  # caller ID in E.164, if usable
    customer_id: str | None = None
    identified_by: IdentifiedBy = IdentifiedBy.UNKNOWN
    decision: MenuDecision | None = None
    decision_ms: float | None = None
    first_prompt_ms: float | None = None  # request in -> first prompt command sent
    intent: str | None = None
    target: str | None = None
    outcome: CallOutcome = CallOutcome.FAILED
    path: list[dict[str, Any]] = field(default_factory=list)
    prefilled: list[str] = field(default_factory=list)
    entered: dict[str, str] = field(default_factory=dict)
    verified: bool = False  # a sensitive answer matched the customer's known value
    verified_by: list[str] = field(default_factory=list)  # the sensitive fields that matched
    lookup_failed: bool = False  # caller ID not looked up (timeline slow or down)
    routing: RouteResult | None = None
    case_id: str | None = None  # an open case (chat, e-mail, ...) this call continues
    ended_at: datetime | None = None

    def step(self, step: str, **details: Any) -> None:
        self.path.append({"step": step, **details})


@dataclass(frozen=True, slots=True)
class CallWrite:
    """Everything one call stores; ``customer_id`` None means: find or create by phone."""

    customer_id: str | None
    phone: str | None
    events: tuple[NewTimelineEvent, ...]
    fields: tuple[KnownField, ...]


def _decision_summary(decision: MenuDecision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "personalised": decision.personalised,
        "order": [f"{e.digit}:{e.option.intent}" for e in decision.entries],
        "shortcut": decision.shortcut.intent if decision.shortcut else None,
        "reasons": list(decision.reasons),
    }


def _routing_summary(routing: RouteResult | None) -> dict[str, Any] | None:
    if routing is None:
        return None
    return {
        "target": routing.target,
        "agent_id": routing.agent_id,
        "reasons": list(routing.reasons),
    }


def to_write(record: CallRecord) -> CallWrite:
    """The call's timeline event (one contact, carrying the intent) and entered fields."""
    ended = record.ended_at or record.call.started_at
    data: dict[str, Any] = {
        "outcome": record.outcome.value,
        "call_id": record.call.call_id,  # the switch's id: the call bridge's events carry it
        "caller_id": record.phone or record.call.caller_id,
        "channel_name": record.call.channel_name,
        "menu": record.call.menu,
        "identified_by": record.identified_by.value,
        "decision": _decision_summary(record.decision),
        "decision_ms": record.decision_ms,
        "first_prompt_ms": record.first_prompt_ms,
        "path": record.path,
        "prefilled": record.prefilled,
        "entered": sorted(record.entered),
        "verified": record.verified,
        "target": record.target,
        "routing": _routing_summary(record.routing),
        "duration_ms": round((ended - record.call.started_at).total_seconds() * 1000),
    }
    event = NewTimelineEvent(
        event_id=call_event_id(record.call.call_key),
        customer_id=record.customer_id or "",
        occurred_at=record.call.started_at,
        channel="voice",
        event_type=CALL_EVENT_TYPE,
        intent=record.intent,
        case_id=record.case_id,
        data=_without_nul(data),
    )
    fields = tuple(
        KnownField(name=name, value=value, source_channel="voice", updated_at=ended)
        for name, value in record.entered.items()
    )
    return CallWrite(record.customer_id, record.phone, (event,), fields)


def call_event_id(call_id: str) -> str:
    """``voice:<call key>:ivr``, the idempotency key of the call's event (``call_id`` is
    the call's ``call_key``; spool lines written before it hold ``voice:<uniqueid>:ivr``,
    replayed as they are). A key that would not fit the column (or holds a NUL, which
    PostgreSQL text refuses) is cut and completed with a digest of the whole key: still
    one key per call, the same every time."""
    event_id = f"voice:{call_id}:ivr"
    if len(event_id) <= EVENT_ID_MAX and "\x00" not in call_id:
        return event_id
    digest = hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"voice:{call_id.replace(chr(0), '')[:120]}~{digest}:ivr"


def _without_nul(value: Any) -> Any:
    """``value`` with every NUL character taken out of its text (a caller ID may carry one,
    URL-decoded from ``%00``; PostgreSQL's jsonb refuses it and the whole call with it)."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value
