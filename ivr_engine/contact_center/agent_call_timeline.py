"""What ``AgentCallTracker`` (``tracker.py``) writes on the timeline about agent calls.

``AgentLeg`` is one agent call the tracker follows, keyed by the caller's ``Uniqueid``;
``AgentCallTimeline`` writes its facts (``call.agent_answered``, ``call.agent_missed``,
``call.agent_ended``) for the customer the dialplan named, else the one customer owning the
caller's number.

Timeline event ids are ``voice:<call key>:<what>:<agent>``: the call key the engine set on
the caller's channel with the routing (``IVR_CALL_KEY``, ``<uniqueid>~<nonce>``, read from
the AMI event's ``ChanVariable``: manager.conf ``channelvars = IVR_CALL_KEY``), the key of
the call's own IVR event, so two PBXs' calls sharing a uniqueid get events of their own and
the screen pop knows them as the call's; the bare uniqueid when no key of this call is
there (a call the engine did not route, no ``channelvars``). Either way the id is the
same every time the same fact is seen, so a replay or a second tracker writes nothing
twice. Where the call-event bridge (crm_bridge.calls) runs on the same Asterisk, it records
the answer and the end durably (``call.answered_by_agent``, ``call.ended``); with
``record_on_timeline=False`` (setting ``agent_events_on_timeline: false``) the tracker then
writes only ``call.agent_missed`` and drives agent state, so each fact is on the timeline
once (the last-agent affinity reads either form). A failed write (store down) is logged
with the call id; it is not retried.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ivr_engine.contact_center.router import AGENT_ANSWERED
from ivr_engine.domain.errors import IvrEngineError
from ivr_engine.ports import Identity, NewTimelineEvent, TimelineStore

log = logging.getLogger(__name__)

AGENT_MISSED = "call.agent_missed"
AGENT_ENDED = "call.agent_ended"
# What the call-event bridge also records (as call.answered_by_agent and call.ended); it has
# no counterpart of call.agent_missed, which the tracker keeps writing.
BRIDGE_RECORDS = frozenset({AGENT_ANSWERED, AGENT_ENDED})


# A call key's random part (``call_record.new_call_nonce``: 16 hex digits), with room to spare.
_NONCE = re.compile(r"[0-9A-Za-z]{1,64}")


def agent_call_key(call_id: str, channel_key: str) -> str:
    """What the tracker's events of the call ``call_id`` (the caller's uniqueid) are keyed
    by: ``channel_key`` (``IVR_CALL_KEY``) when it is this call's key, ``<call_id>~<nonce>``;
    else (empty: not routed by the engine or no ``channelvars``; another channel's, or not
    a key) ``call_id`` itself. Pure."""
    head, sep, nonce = channel_key.rpartition("~")
    if sep and head == call_id and _NONCE.fullmatch(nonce):
        return channel_key
    return call_id


def agent_event_id(leg: AgentLeg, suffix: str) -> str:
    """``voice:<call key>:<suffix>:<agent>``, the same for every sighting of the fact."""
    return f"voice:{agent_call_key(leg.call_id, leg.call_key)}:{suffix}:{leg.agent_id}"


@dataclass(slots=True)
class AgentLeg:
    call_id: str  # the caller's Uniqueid: what AMI events and the reservation are keyed by
    agent_id: str
    customer_id: str
    caller: str
    dialled_at: datetime
    answered_at: datetime | None = None
    agent_channel: str = ""  # the agent leg's Uniqueid, from the answered DialEnd
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    recovered: bool = False  # adopted by a resync: its times are approximate
    call_key: str = ""  # IVR_CALL_KEY as the AMI event carried it (``agent_call_key``)


class AgentCallTimeline:
    def __init__(
        self,
        timeline: TimelineStore,
        *,
        clock: Callable[[], datetime],
        record_on_timeline: bool = True,
    ) -> None:
        self._timeline = timeline
        self._clock = clock
        self._record_on_timeline = record_on_timeline

    async def record(self, leg: AgentLeg, kind: str, data: dict[str, Any], suffix: str) -> None:
        if not self._record_on_timeline and kind in BRIDGE_RECORDS:
            return  # the call-event bridge records this fact
        if leg.recovered:  # adopted by a resync: ring and talk times are approximate
            data = {**data, "recovered": True}
        try:
            customer_id = leg.customer_id or await self._customer_by_phone(leg.caller)
            if not customer_id:
                log.warning(
                    "call %s: no customer for %r; %s not stored", leg.call_id, leg.caller, kind
                )
                return
            event = NewTimelineEvent(
                event_id=agent_event_id(leg, suffix),
                customer_id=customer_id,
                occurred_at=self._clock(),
                channel="voice",
                event_type=kind,
                data={"agent_id": leg.agent_id, **data},
            )
            await self._timeline.append_events([event])
        except IvrEngineError as exc:
            log.error("call %s: %s not stored: %r", leg.call_id, kind, exc)

    async def _customer_by_phone(self, phone: str) -> str:
        if not phone:
            return ""
        found = await self._timeline.find_customers(Identity("phone", phone))
        return found[0].customer_id if len(found) == 1 else ""


__all__ = [
    "AGENT_ENDED",
    "AGENT_MISSED",
    "BRIDGE_RECORDS",
    "AgentCallTimeline",
    "AgentLeg",
    "agent_call_key",
    "agent_event_id",
]
