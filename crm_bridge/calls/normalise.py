"""AMI events → call events: ``normalise(event, state, at=...)``, pure and deterministic.

No I/O and no clock: ``at`` is when the event was received; an event's own ``Timestamp``
header (manager.conf ``timestampevents = yes``) wins over it. ``state`` is updated in place.
One handler per AMI event, registered in one table (``HANDLERS``); an event without a
handler, or about a channel that belongs to no live inbound call, gives nothing.

* ``Newchannel`` of a call's first channel (``Uniqueid == Linkedid``) in an inbound context
  → ``call.started``. Later channels of the call (agent legs) share its ``Linkedid``.
* ``Newstate`` Up of the caller channel: answered by the switch (``ring_ms``), no event.
* ``UserEvent`` ``IvrFallback`` / ``IvrRouted`` / ``IvrOverflow`` → ``call.ivr_fallback`` /
  ``call.ivr_routed`` / ``call.overflowed``; ``IvrAgentDial`` → ``call.transferred``.
* ``DialBegin`` from a channel of the call → ``call.transferred``, unless an
  ``IvrAgentDial`` announced it or another leg is already ringing (ring-all: one transfer).
* ``DialEnd`` ANSWER, or ``BridgeEnter`` that puts the caller with another channel of the
  call → ``call.answered_by_agent`` (once per connection, whichever comes first).
* ``Hold`` / ``Unhold`` → ``call.held`` / ``call.resumed``.
* ``Hangup`` of the caller channel → ``call.ended``: Q.850 cause and ``ring_ms`` (until the
  switch answered), ``wait_ms`` (until an agent answered), ``talk_ms``, ``hold_ms``,
  ``total_ms``; ``None`` where it did not happen or is not known.

After a reconnect (``FullyBooted``) the reader lists the live channels and calls
``resync.reconcile``: calls that ended unseen are closed (``approximate``), inbound calls
that started unseen are adopted (``recovered``; start time from the channel's ``Duration``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from crm_bridge.calls.model import CallEventKind, NormalisedEvent
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
from ivr_engine.telephony.ami import AmiEvent, ChannelState, int_header

__all__ = ["ASTERISK_EVENT_NAMES", "HANDLERS", "SUBSCRIBED_EVENTS", "event_time", "normalise"]

K = CallEventKind
Handler = Callable[[AmiEvent, BridgeState, datetime], list[NormalisedEvent]]


def normalise(event: AmiEvent, state: BridgeState, *, at: datetime) -> list[NormalisedEvent]:
    handler = HANDLERS.get(event.name.lower())
    return [] if handler is None else handler(event, state, event_time(event, at))


def event_time(event: AmiEvent, received_at: datetime) -> datetime:
    """The event's ``Timestamp`` header (epoch seconds) if valid, else ``received_at``."""
    raw = event.get("Timestamp")
    if raw:
        try:
            return datetime.fromtimestamp(float(raw), UTC)
        except (ValueError, OverflowError, OSError):
            pass
    return received_at


def _call_of(event: AmiEvent, state: BridgeState, prefix: str = "") -> CallState | None:
    uniqueid = event.get(f"{prefix}Uniqueid", "")
    linkedid = event.get(f"{prefix}Linkedid", "")
    call = state.find(uniqueid, linkedid)
    if call is not None and uniqueid == call.call_id and linkedid != call.call_id:
        state.alias(call, linkedid)  # the caller's Linkedid changed (bridged with an older call)
    return call


AMI_START = StartHeaders("Channel", "CallerIDNum", "CallerIDName", "Exten", "Context")


# --- handlers ----------------------------------------------------------------------------


def _newchannel(event: AmiEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    uniqueid = event.get("Uniqueid", "")
    context = event.get("Context", "")
    if not uniqueid or uniqueid != event.get("Linkedid", ""):
        return []  # not the first channel of a call (an agent leg, a Local half ...)
    if not state.config.is_inbound_context(context):
        return []
    if state.find(uniqueid, uniqueid) is not None or state.has_ended(uniqueid):
        return []
    return [start_call(event, state, uniqueid, at, AMI_START)]


def _newstate(event: AmiEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    up = int_header(event, "ChannelState") == ChannelState.UP
    caller_channel = call is not None and event.get("Uniqueid") == call.call_id
    if call is not None and up and caller_channel and call.answered_at is None:
        call.answered_at = at
        state.touch(call)
    return []


def _user_event(event: AmiEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    name = event.get("UserEvent", "")
    if call is None:
        return []
    data: dict[str, Any]
    if name == "IvrFallback":
        data = {"agi_status": text(event, "AgiStatus"), "outcome": text(event, "Outcome")}
        return [emit(state, call, K.IVR_FALLBACK, at, data)]
    if name == "IvrRouted":
        call.intent = intent(event) or call.intent
        data = {
            "target": text(event, "Target"),
            "decision": text(event, "Decision"),
            "outcome": text(event, "Outcome"),
            "agi_status": text(event, "AgiStatus"),
            "agent_id": text(event, "Agent"),
            "engine_customer_id": text(event, "Customer"),
        }
        return [emit(state, call, K.IVR_ROUTED, at, data, call.intent)]
    if name == "IvrOverflow":
        tried = [t for t in (event.get("Tried") or "").split(",") if t.strip()]
        data = {"target": text(event, "Target"), "tried": tried}
        return [emit(state, call, K.OVERFLOWED, at, data, intent(event) or call.intent)]
    if name == "IvrAgentDial":
        call.agent_id = text(event, "Agent")
        call.ivr_dial_pending = True
        call.transfer_at = at
        data = {
            "via": "ivr",
            "agent_id": call.agent_id,
            "engine_customer_id": text(event, "Customer"),
        }
        return [emit(state, call, K.TRANSFERRED, at, data, intent(event) or call.intent)]
    return []


def _dial_begin(event: AmiEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    destination = event.get("DestUniqueid", "")
    if call is None or not destination:
        return []
    announce = not call.ringing and not call.ivr_dial_pending
    call.ivr_dial_pending = False
    call.ringing.append(destination)
    state.touch(call)
    if not announce:
        return []
    call.transfer_at = at
    data = {
        "via": "dial",
        "destination": text(event, "DestChannel"),
        "dial_string": text(event, "DialString"),
    }
    return [emit(state, call, K.TRANSFERRED, at, data, call.intent)]


def _dial_end(event: AmiEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    destination = event.get("DestUniqueid", "")
    if call is None or not destination:
        return []
    if destination in call.ringing:
        call.ringing.remove(destination)
    state.touch(call)
    if event.get("DialStatus", "").upper() != "ANSWER":
        return []
    return agent_connected(state, call, destination, text(event, "DestChannel"), at, "dial")


def _bridge_enter(event: AmiEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    bridge = event.get("BridgeUniqueid", "")
    if call is None or not bridge:
        return []
    members = call.bridges.setdefault(bridge, {})
    members[event.get("Uniqueid", "")] = raw(event, "Channel")
    state.touch(call)
    others = [uid for uid in members if uid != call.call_id]
    if call.call_id not in members or not others or call.agents:
        return []
    return agent_connected(state, call, others[0], members[others[0]] or None, at, "bridge")


def _bridge_leave(event: AmiEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    bridge = event.get("BridgeUniqueid", "")
    uniqueid = event.get("Uniqueid", "")
    if call is None or bridge not in call.bridges:
        return []
    members = call.bridges[bridge]
    left = [m for m in members if m != call.call_id] if uniqueid == call.call_id else [uniqueid]
    for leg in left:
        agent_gone(state, call, leg, at)
    members.pop(uniqueid, None)
    if not members:
        del call.bridges[bridge]
    state.touch(call)
    return []


def _hold(event: AmiEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    if call is None or call.hold_since is not None:
        return []
    call.hold_since = at
    by = "caller" if event.get("Uniqueid") == call.call_id else "agent"
    data = {"channel": text(event, "Channel"), "by": by, "music_class": text(event, "MusicClass")}
    return [emit(state, call, K.HELD, at, data, call.intent)]


def _unhold(event: AmiEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    if call is None or call.hold_since is None:
        return []  # its Hold was not seen (before a reconnect): nothing to close
    held = ms(at, call.hold_since) or 0
    call.hold_ms += held
    call.hold_since = None
    data = {"channel": text(event, "Channel"), "held_ms": held}
    return [emit(state, call, K.RESUMED, at, data, call.intent)]


def _hangup(event: AmiEvent, state: BridgeState, at: datetime) -> list[NormalisedEvent]:
    call = _call_of(event, state)
    uniqueid = event.get("Uniqueid", "")
    if call is None:
        return []
    if uniqueid != call.call_id:  # an agent leg or another channel of the call
        if uniqueid in call.ringing:
            call.ringing.remove(uniqueid)
        agent_gone(state, call, uniqueid, at)
        for members in call.bridges.values():
            members.pop(uniqueid, None)
        state.touch(call)
        return []
    cause = int_header(event, "Cause")
    return [end_call(state, call, at, cause, raw(event, "Cause-txt"), approximate=False)]


HANDLERS: dict[str, Handler] = {}


def _register(name: str, handler: Handler) -> None:
    if name.lower() in HANDLERS:
        raise ValueError(f"two handlers for AMI event {name}")
    HANDLERS[name.lower()] = handler


_HANDLED = (
    ("Newchannel", _newchannel),
    ("Newstate", _newstate),
    ("UserEvent", _user_event),
    ("DialBegin", _dial_begin),
    ("DialEnd", _dial_end),
    ("BridgeEnter", _bridge_enter),
    ("BridgeLeave", _bridge_leave),
    ("Hold", _hold),
    ("Unhold", _unhold),
    ("Hangup", _hangup),
)
for _name, _handler in _HANDLED:
    _register(_name, _handler)

#: The AMI events the reader subscribes to (``FullyBooted`` starts a resync).
SUBSCRIBED_EVENTS = (*sorted(HANDLERS), "fullybooted")
#: The same, spelled as Asterisk names them: the reader's server-side event filter.
ASTERISK_EVENT_NAMES = (*(name for name, _ in _HANDLED), "FullyBooted")
