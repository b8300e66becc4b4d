"""Which history events are the customer's contacts: pure, no I/O.

A contact is the customer reaching out once: a call, a conversation, a message outside one.
One call leaves several events (the engine's ``call.ivr``; the call-event bridge's
``call.ivr_routed``, ``call.transferred``, ``call.ended`` ...; the agent tracker's
``call.agent_*``), all with the call's intent; a conversation leaves one event per message.
So, of the windowed events with a menu intent:

* follow-up events (``FOLLOW_UP_EVENT_TYPES``) are never a contact: they follow a contact
  already counted, or are the business writing to the customer (``message.outbound``);
* a case (``case_id``: a conversation, or a call that joined it) is one contact per intent,
  dated by its newest event of that intent;
* the bridge's ``call.ivr_routed`` is the only record of a call the dialplan routed while
  the engine was unreachable (``Decision: dialplan-fallback``), so it is a contact, except
  when it is the routing of a call the engine handled and recorded itself: an engine
  ``call.ivr`` of the same intent started at most ``SAME_CALL_AFTER`` before it (or
  ``SAME_CALL_BEFORE`` after it: the switch's and the engine's clocks). Each engine call
  takes at most one such routing, so a fallback call minutes after an engine call counts.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ivr_engine.domain.models import HistoryEvent
from ivr_engine.personalize._time import as_utc

ENGINE_CALL = "call.ivr"  # flows.call_record: the engine's record of a call it handled
BRIDGE_ROUTED = "call.ivr_routed"  # crm_bridge.calls: the dialplan's routing of a call
SAME_CALL_AFTER = timedelta(minutes=10)  # an engine call's menu and routing take less
SAME_CALL_BEFORE = timedelta(minutes=1)  # clock skew between the switch and the engine

# A call's own follow-ups: never a contact, never a case's activity of their own (the
# call's ``call.ivr`` / ``call.ivr_routed`` carries its case). The per-call lookup leaves
# them out (timeline.fast_lookup), so its ``max_events`` window holds contacts, not the
# 7-10 events each bridged call leaves.
CALL_FOLLOW_UP_EVENT_TYPES = frozenset(
    {
        # the call-event bridge (crm_bridge.calls.model.CallEventKind), after its routing
        "call.started",
        "call.ivr_fallback",
        "call.overflowed",
        "call.transferred",
        "call.answered_by_agent",
        "call.held",
        "call.resumed",
        "call.ended",
        # the engine's agent tracker (contact_center.agent_call_timeline)
        "call.agent_answered",
        "call.agent_missed",
        "call.agent_ended",
    }
)
FOLLOW_UP_EVENT_TYPES = CALL_FOLLOW_UP_EVENT_TYPES | {
    # the business to the customer (agent replies, continue by SMS), and case changes: not
    # contacts, but a case's activity (and ``case.closed`` closes it)
    "message.outbound",
    "continuation.redeemed",
    "case.closed",
}


@dataclass(frozen=True, slots=True)
class Contact:
    intent: str
    at: datetime  # aware UTC: its newest event of that intent


def contacts(newest_first: Sequence[HistoryEvent], known: Collection[str]) -> list[Contact]:
    """The contacts among windowed events (newest first), newest first, one per contact."""
    candidates = [
        e
        for e in newest_first
        if e.intent is not None and e.intent in known and e.event_type not in FOLLOW_UP_EVENT_TYPES
    ]
    recorded_twice = _routings_of_engine_calls(candidates)
    seen_cases: set[tuple[str, str]] = set()
    found: list[Contact] = []
    for index, event in enumerate(candidates):
        assert event.intent is not None  # filtered above
        if index in recorded_twice:
            continue
        if event.case_id is not None:
            if (event.case_id, event.intent) in seen_cases:
                continue
            seen_cases.add((event.case_id, event.intent))
        found.append(Contact(event.intent, as_utc(event.occurred_at)))
    return found


def _routings_of_engine_calls(newest_first: Sequence[HistoryEvent]) -> set[int]:
    """Indexes of the ``call.ivr_routed`` events that route a call the engine recorded."""
    engine_calls = [i for i, e in enumerate(newest_first) if e.event_type == ENGINE_CALL]
    taken: set[int] = set()
    matched: set[int] = set()
    for index in reversed(range(len(newest_first))):  # oldest routing first
        routed = newest_first[index]
        if routed.event_type != BRIDGE_ROUTED:
            continue
        at = as_utc(routed.occurred_at)
        call = next(  # the oldest free engine call of that intent that fits (a routing
            (  # taken in time order by the call that ends soonest: as many pairs as can be)
                c
                for c in reversed(engine_calls)
                if c not in taken
                and newest_first[c].intent == routed.intent
                and _same_call(as_utc(newest_first[c].occurred_at), at)
            ),
            None,
        )
        if call is not None:
            taken.add(call)
            matched.add(index)
    return matched


def _same_call(started_at: datetime, routed_at: datetime) -> bool:
    return started_at - SAME_CALL_BEFORE <= routed_at <= started_at + SAME_CALL_AFTER
