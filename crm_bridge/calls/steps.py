"""The steps shared by the AMI and ESL event handlers and the resync: header access made
safe for the timeline, event emission (keys, ordinals, ``seq``), agent connections and the
end of a call with its durations. Pure, like everything the normaliser does.

``prefix`` names the wire the events came from, first part of every event id: ``ami``
(the default: AMI ids stay what they always were) or ``esl`` (FreeSWITCH)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from crm_bridge.calls.model import MAX_INTENT, CallEventKind, NormalisedEvent, event_key
from crm_bridge.calls.state import BridgeState, CallState
from ivr_engine.domain.models import CountryCodeWithoutPlus
from ivr_engine.identity import normalize_caller_id

__all__ = [
    "Headers",
    "agent_connected",
    "agent_gone",
    "emit",
    "end_call",
    "intent",
    "ms",
    "raw",
    "start_call",
    "text",
]

K = CallEventKind
AMI = "ami"


class Headers(Protocol):
    """An event's headers: ``AmiEvent`` or ``EslEvent``."""

    def get(self, key: str, default: str, /) -> str: ...


def ms(later: datetime, earlier: datetime | None) -> int | None:
    return None if earlier is None else max(0, round((later - earlier).total_seconds() * 1000))


def raw(event: Headers, key: str) -> str:
    """A header as stored: without NUL (PostgreSQL's jsonb refuses it), at most 256 chars."""
    return event.get(key, "").replace("\x00", "")[:256]


def text(event: Headers, key: str) -> str | None:
    return raw(event, key).strip() or None


def intent(event: Headers) -> str | None:
    value = text(event, "Intent")
    return None if value is None else value[:MAX_INTENT]


def emit(
    state: BridgeState,
    call: CallState,
    kind: CallEventKind,
    at: datetime,
    data: Mapping[str, Any],
    intent: str | None = None,
    *,
    prefix: str = AMI,
) -> NormalisedEvent:
    ordinal = call.next_ordinal(kind.value)
    call.last_event_at = max(call.last_event_at, at)
    state.touch(call)
    return NormalisedEvent(
        event_id=event_key(state.config.source, call.call_id, kind, ordinal, prefix=prefix),
        call_id=call.call_id,
        kind=kind,
        seq=call.seq,
        occurred_at=at,
        caller=call.caller,
        intent=intent,
        data=dict(data),
    )


def agent_connected(
    state: BridgeState,
    call: CallState,
    leg: str,
    channel: str | None,
    at: datetime,
    via: str,
    *,
    agent_id: str | None = None,
    prefix: str = AMI,
) -> list[NormalisedEvent]:
    """``agent_id``: the agent the switch names on the connection, else the call's own
    (from the IVR's agent dial)."""
    if leg in call.agents:
        return []
    first = not call.agents
    call.agents[leg] = at
    call.first_agent_at = call.first_agent_at or at
    state.touch(call)
    if not first:
        return []  # a second party joined a call already with an agent
    data = {
        "via": via,
        "agent_id": agent_id or call.agent_id,
        "agent_channel": channel,
        "ring_ms": ms(at, call.transfer_at),
    }
    return [emit(state, call, K.ANSWERED_BY_AGENT, at, data, call.intent, prefix=prefix)]


def agent_gone(state: BridgeState, call: CallState, leg: str, at: datetime) -> None:
    since = call.agents.pop(leg, None)
    if since is not None:
        call.talk_ms += ms(at, since) or 0
        state.touch(call)


def end_call(
    state: BridgeState,
    call: CallState,
    at: datetime,
    cause: int | None,
    cause_txt: str,
    *,
    approximate: bool,
    prefix: str = AMI,
) -> NormalisedEvent:
    for leg in list(call.agents):
        agent_gone(state, call, leg, at)
    if call.hold_since is not None:
        call.hold_ms += ms(at, call.hold_since) or 0
        call.hold_since = None
    data: dict[str, Any] = {
        "cause": cause,
        "cause_txt": cause_txt,
        "ring_ms": ms(call.answered_at, call.started_at) if call.answered_at else None,
        "wait_ms": ms(call.first_agent_at, call.started_at) if call.first_agent_at else None,
        "talk_ms": call.talk_ms if call.first_agent_at else None,
        "hold_ms": call.hold_ms,
        "total_ms": ms(at, call.started_at),
        "answered_by_agent": call.first_agent_at is not None,
    }
    if approximate or call.recovered:
        data["approximate"] = True
    if approximate:
        data["ended_between"] = [call.last_event_at.isoformat(), at.isoformat()]
    ended = emit(state, call, K.ENDED, at, data, call.intent, prefix=prefix)
    state.remove(call)
    return ended


@dataclass(frozen=True, slots=True)
class StartHeaders:
    """Which headers of a switch's "new channel" event carry what ``call.started`` needs."""

    channel: str
    caller_number: str
    caller_name: str
    dialled: str
    context: str


@lru_cache(maxsize=4096)
def caller_id(
    raw: str, default_region: str, without_plus: CountryCodeWithoutPlus = "auto"
) -> str | None:
    """``normalize_caller_id``, remembered for the numbers seen lately (it is pure, and
    parsing a number with phonenumbers costs more than the rest of a new channel event)."""
    return normalize_caller_id(raw, default_region, without_plus)


def start_call(
    event: Headers,
    state: BridgeState,
    call_id: str,
    at: datetime,
    names: StartHeaders,
    *,
    prefix: str = AMI,
) -> NormalisedEvent:
    """A new inbound call: its live state (caller ID in E.164) and its ``call.started``."""
    caller_raw = raw(event, names.caller_number)
    call = CallState(
        call_id=call_id,
        channel=raw(event, names.channel),
        caller=caller_id(
            caller_raw, state.config.default_region, state.config.country_code_without_plus
        ),
        started_at=at,
        last_event_at=at,
    )
    state.add(call)
    data = {
        "channel": call.channel,
        "caller_id_raw": caller_raw,
        "caller_name": text(event, names.caller_name),
        "dialled": text(event, names.dialled),
        "context": raw(event, names.context),
    }
    return emit(state, call, CallEventKind.STARTED, at, data, prefix=prefix)
