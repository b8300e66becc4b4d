"""FreeSWITCH Event Socket events → call events: ``normalise_esl(event, state, at=...)``.

Pure and deterministic, like ``normalise`` for AMI, and into the same vocabulary
(``NormalisedEvent``, ``BridgeState``/``CallState``), so the outbox, the bus and the timeline
consumer take FreeSWITCH calls unchanged. The call id is the caller channel's
``Unique-ID``; other legs name it in ``Channel-Call-UUID`` (FreeSWITCH's ``call_uuid``,
inherited by the legs a channel originates) or ``Other-Leg-Unique-ID``. An event's
``Event-Date-Timestamp`` (microseconds since the epoch) wins over the receive time ``at``.

* ``CHANNEL_CREATE`` of an inbound first leg in an ``inbound_contexts`` context (FreeSWITCH's
  ``Caller-Context``, e.g. ``public``) → ``call.started``; of another leg of a live call
  (a ``bridge`` ringing an agent) → ``call.transferred`` (once for ring-all, none when the
  dialplan announced it with ``ivr_engine::agent_dial``).
* ``CHANNEL_ANSWER`` of the caller channel: answered by the switch (``ring_ms``), no event.
* ``CHANNEL_BRIDGE`` → ``call.answered_by_agent`` (once per connection);
  ``CHANNEL_UNBRIDGE`` closes the agent's talk time.
* ``CHANNEL_HOLD`` / ``CHANNEL_UNHOLD`` → ``call.held`` / ``call.resumed``.
* ``CHANNEL_HANGUP_COMPLETE`` of the caller channel → ``call.ended``: ``cause`` (Q.850,
  ``variable_hangup_cause_q850``), ``cause_txt`` (``Hangup-Cause``), ``ring_ms``,
  ``wait_ms``, ``talk_ms``, ``hold_ms``, ``total_ms``.
* ``CUSTOM`` ``ivr_engine::fallback`` / ``routed`` / ``overflow`` / ``agent_dial`` (fired by
  ``dialplans/freeswitch/ivr-engine.xml`` with the ``event`` application) →
  ``call.ivr_fallback`` / ``call.ivr_routed`` / ``call.overflowed`` / ``call.transferred``.
  The fallback's ``caller`` is ``Caller-Caller-ID-Number``, which the ``event`` application
  adds from the channel (``switch_channel_event_set_data``): caller-controlled text is never
  put in the event's own comma-separated data, where it could add or replace headers
  (``Event-Subclass`` included). A ``Caller`` header (older sample dialplans) is ignored.

Event ids are ``esl:<source>:<call id>:<kind>:<n>``: the same events normalised again give
the same ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from crm_bridge.calls.model import CallEventKind, NormalisedEvent, event_key
from crm_bridge.calls.state import BridgeState, CallState
from crm_bridge.calls.steps import (
    StartHeaders,
    agent_connected,
    agent_gone,
    emit,
    end_call,
    intent,
    ms,
    raw,
    start_call,
    text,
)
from ivr_engine.telephony.esl import EslEvent

__all__ = ["CUSTOM_SUBCLASSES", "PREFIX", "SUBSCRIBED_EVENTS", "esl_event_key", "normalise_esl"]

K = CallEventKind
CALLER_NUMBER = "Caller-Caller-ID-Number"  # channel data the `event` application adds
Handler = Callable[[EslEvent, BridgeState, datetime], list[NormalisedEvent]]
PREFIX = "esl"
CUSTOM_SUBCLASSES = (
    "ivr_engine::fallback",
    "ivr_engine::routed",
    "ivr_engine::overflow",
    "ivr_engine::agent_dial",
)


def esl_event_key(source: str, call_id: str, kind: CallEventKind, ordinal: int) -> str:
    return event_key(source, call_id, kind, ordinal, prefix=PREFIX)


def normalise_esl(event: EslEvent, state: BridgeState, *, at: datetime) -> list[NormalisedEvent]:
    handler = HANDLERS.get(event.name)
    return [] if handler is None else handler(event, state, event_time(event, at))


def event_time(event: EslEvent, received_at: datetime) -> datetime:
    """``Event-Date-Timestamp`` (microseconds since the epoch) if valid, else ``received_at``."""
    stamp = event.get("Event-Date-Timestamp").strip()
    if stamp.isascii() and stamp.isdigit() and 0 < len(stamp) <= 17:
        return datetime.fromtimestamp(int(stamp) / 1_000_000, UTC)
    return received_at


def _call_of(event: EslEvent, state: BridgeState) -> CallState | None:
    for key in ("Unique-ID", "Channel-Call-UUID", "variable_call_uuid", "Other-Leg-Unique-ID"):
        value = event.get(key)
        call = state.find(value, value) if value else None
        if call is not None:
            return call
    return None


def _emit(
    state: BridgeState,
    call: CallState,
    kind: CallEventKind,
    at: datetime,
    data: Mapping[str, Any],
    intent: str | None = None,
) -> NormalisedEvent:
    return emit(state, call, kind, at, data, intent, prefix=PREFIX)


ESL_START = StartHeaders(
    "Channel-Name",
    "Caller-Caller-ID-Number",
    "Caller-Caller-ID-Name",
    "Caller-Destination-Number",
    "Caller-Context",
)


# --- handlers ----------------------------------------------------------------------------


def _create(event: EslEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    uid = event.unique_id
    known = _call_of(event, state)
    if known is not None and uid != known.call_id:
        return _leg_created(event, state, known, at)
    first_leg = event.get("Channel-Call-UUID") in ("", uid)
    inbound = event.get("Call-Direction") == "inbound"
    if not uid or known is not None or not first_leg or not inbound or state.has_ended(uid):
        return []
    if not state.config.is_inbound_context(event.get("Caller-Context")):
        return []
    return [start_call(event, state, uid, at, ESL_START, prefix=PREFIX)]


def _leg_created(
    event: EslEvent, state: BridgeState, call: CallState, at: datetime
) -> list[NormalisedEvent]:
    announce = not call.ringing and not call.ivr_dial_pending
    call.ivr_dial_pending = False
    call.ringing.append(event.unique_id)
    state.touch(call)
    if not announce:
        return []
    call.transfer_at = at
    data = {
        "via": "dial",
        "destination": text(event, "Channel-Name"),
        "dial_string": text(event, "Caller-Destination-Number"),
    }
    return [_emit(state, call, K.TRANSFERRED, at, data, call.intent)]


def _answer(event: EslEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    if call is not None and event.unique_id == call.call_id and call.answered_at is None:
        call.answered_at = at
        state.touch(call)
    return []


def _other_leg(event: EslEvent, call: CallState) -> tuple[str, str | None]:
    if event.unique_id == call.call_id:
        return event.get("Other-Leg-Unique-ID"), text(event, "Other-Leg-Channel-Name")
    return event.unique_id, text(event, "Channel-Name")


def _bridge(event: EslEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    if call is None:
        return []
    leg, channel = _other_leg(event, call)
    if not leg:
        return []
    if leg in call.ringing:
        call.ringing.remove(leg)
    agent = event.variable("IVR_AGENT_ID")
    return agent_connected(state, call, leg, channel, at, "bridge", agent_id=agent, prefix=PREFIX)


def _unbridge(event: EslEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    if call is not None:
        agent_gone(state, call, _other_leg(event, call)[0], at)
    return []


def _hold(event: EslEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    if call is None or call.hold_since is not None:
        return []
    call.hold_since = at
    by = "caller" if event.unique_id == call.call_id else "agent"
    data = {"channel": text(event, "Channel-Name"), "by": by}
    return [_emit(state, call, K.HELD, at, data, call.intent)]


def _unhold(event: EslEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    if call is None or call.hold_since is None:
        return []
    held = ms(at, call.hold_since) or 0
    call.hold_ms += held
    call.hold_since = None
    data = {"channel": text(event, "Channel-Name"), "held_ms": held}
    return [_emit(state, call, K.RESUMED, at, data, call.intent)]


def _hangup(event: EslEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    uid = event.unique_id
    if call is None:
        return []
    if uid != call.call_id:  # an agent leg
        if uid in call.ringing:
            call.ringing.remove(uid)
        agent_gone(state, call, uid, at)
        state.touch(call)
        return []
    return [_end(event, state, call, at)]


def _end(event: EslEvent, state: BridgeState, call: CallState, at: datetime) -> NormalisedEvent:
    q850 = (event.variable("hangup_cause_q850") or "").strip()
    cause = int(q850) if q850.isascii() and q850.isdigit() and len(q850) < 6 else None
    cause_txt = raw(event, "Hangup-Cause")
    return end_call(state, call, at, cause, cause_txt, approximate=False, prefix=PREFIX)


def _custom(event: EslEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    name = event.subclass.removeprefix("ivr_engine::")
    if call is None or not event.subclass.startswith("ivr_engine::"):
        return []
    if name == "fallback":
        data = {"outcome": text(event, "Outcome"), "caller": text(event, CALLER_NUMBER)}
        return [_emit(state, call, K.IVR_FALLBACK, at, data)]
    if name == "routed":
        call.intent = intent(event) or call.intent
        keys = ("Target", "Decision", "Outcome", "Agent", "Customer")
        data = {k.lower(): text(event, k) for k in keys}
        data["agent_id"], data["engine_customer_id"] = data.pop("agent"), data.pop("customer")
        return [_emit(state, call, K.IVR_ROUTED, at, data, call.intent)]
    if name == "overflow":
        tried = [t for t in event.get("Tried").split(",") if t.strip()]
        overflow = {"target": text(event, "Target"), "tried": tried}
        return [_emit(state, call, K.OVERFLOWED, at, overflow, intent(event) or call.intent)]
    if name == "agent_dial":
        call.agent_id, call.ivr_dial_pending, call.transfer_at = text(event, "Agent"), True, at
        data = {"via": "ivr", "agent_id": call.agent_id}
        data["engine_customer_id"] = text(event, "Customer")
        return [_emit(state, call, K.TRANSFERRED, at, data, intent(event) or call.intent)]
    return []


HANDLERS: dict[str, Handler] = {
    "CHANNEL_CREATE": _create,
    "CHANNEL_ANSWER": _answer,
    "CHANNEL_BRIDGE": _bridge,
    "CHANNEL_UNBRIDGE": _unbridge,
    "CHANNEL_HOLD": _hold,
    "CHANNEL_UNHOLD": _unhold,
    "CHANNEL_HANGUP_COMPLETE": _hangup,
    "CUSTOM": _custom,
}

#: ``event plain`` arguments: the event names, then the CUSTOM subclasses.
SUBSCRIBED_EVENTS = (*HANDLERS, *CUSTOM_SUBCLASSES)
