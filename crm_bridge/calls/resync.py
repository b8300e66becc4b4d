"""Resynchronisation after a reconnect, an Asterisk restart or a bridge restart: the live
channel list (``CoreShowChannels``) against the calls the bridge believes are live. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from crm_bridge.calls.model import CallEventKind, NormalisedEvent
from crm_bridge.calls.state import BridgeState, CallState
from crm_bridge.calls.steps import agent_gone, emit, end_call, raw, text
from ivr_engine.identity import normalize_caller_id
from ivr_engine.telephony.ami import AmiEvent

__all__ = ["LOST_END", "begin_resync", "reconcile"]

K = CallEventKind
LOST_END = "unknown: the call ended while the bridge was not connected to Asterisk"


def begin_resync(state: BridgeState) -> frozenset[str]:
    """The calls to check against the channel list (those live before the list was asked)."""
    return frozenset(state.calls)


def reconcile(
    state: BridgeState,
    channels: Sequence[AmiEvent],
    suspects: Iterable[str],
    *,
    at: datetime,
) -> list[NormalisedEvent]:
    """Close suspects whose caller channel is gone; adopt live inbound calls not known.

    ``channels``: the ``CoreShowChannel`` events of a ``CoreShowChannels`` action. Call it
    after the events queued before the list's answer were normalised, so a call that ended
    or started just before the list is handled by its own events, not guessed here.
    """
    live = {e.get("Uniqueid", "") for e in channels}
    out: list[NormalisedEvent] = []
    for call_id in sorted(suspects):
        call = state.calls.get(call_id)
        if call is None:
            continue
        if call_id not in live:
            out.append(end_call(state, call, at, None, LOST_END, approximate=True))
            continue
        for leg in [leg for leg in call.agents if leg not in live]:
            agent_gone(state, call, leg, at)
        call.ringing = [leg for leg in call.ringing if leg in live]
        state.touch(call)
    for channel in channels:
        out += _adopt(state, channel, at)
    return out


def _duration(text: str) -> timedelta:
    try:
        hours, minutes, seconds = (int(part) for part in text.split(":"))
    except ValueError:
        return timedelta(0)
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _adopt(state: BridgeState, channel: AmiEvent, at: datetime) -> list[NormalisedEvent]:
    uniqueid = channel.get("Uniqueid", "")
    if not uniqueid or uniqueid != channel.get("Linkedid", ""):
        return []
    if state.find(uniqueid, uniqueid) is not None or state.has_ended(uniqueid):
        return []
    if not state.config.is_adoptable_context(channel.get("Context", "")):
        return []
    started = at - _duration(channel.get("Duration", ""))
    caller_raw = raw(channel, "CallerIDNum")
    call = CallState(
        call_id=uniqueid,
        channel=raw(channel, "Channel"),
        caller=normalize_caller_id(
            caller_raw, state.config.default_region, state.config.country_code_without_plus
        ),
        started_at=started,
        last_event_at=at,
        recovered=True,
    )
    state.add(call)
    data = {
        "channel": call.channel,
        "caller_id_raw": caller_raw,
        "caller_name": text(channel, "CallerIDName"),
        "context": text(channel, "Context"),
        "recovered": True,
        "approximate": True,
    }
    return [emit(state, call, K.STARTED, started, data)]
