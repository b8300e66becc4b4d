"""One call, as the engine and the call-event bridge write it on the timeline, is one contact.

The bridge's events come from its real normaliser over the fake switch's AMI events; the
engine's from its real call record (``call.ivr``) and the agent tracker's event types.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from crm_bridge.calls import BridgeState, NormalisedEvent, normalise
from ivr_engine.contact_center.agent_call_timeline import AGENT_ENDED
from ivr_engine.contact_center.router import AGENT_ANSWERED
from ivr_engine.domain.models import CallOutcome, HistoryEvent, RankingPolicy
from ivr_engine.flows.call_record import CallRecord, IncomingCall, to_write
from ivr_engine.personalize import rank_intents
from ivr_engine.ports import NewTimelineEvent
from ivr_engine.telephony.ami import AmiEvent
from tests.component.test_call_bridge_fakes import T0, Channel, Switch

INTENTS = ("billing", "tech_support", "operator")
START = datetime.fromtimestamp(T0, UTC)
NOW = START + timedelta(days=1)
POLICY = RankingPolicy()


def bridge_events(events: Sequence[AmiEvent]) -> list[NormalisedEvent]:
    state = BridgeState()
    return [out for event in events for out in normalise(event, state, at=START)]


def history(events: Sequence[NewTimelineEvent]) -> list[HistoryEvent]:
    return [
        HistoryEvent(e.occurred_at, e.channel, e.event_type, e.intent, e.case_id) for e in events
    ]


def engine_call(call: Channel, intent: str) -> NewTimelineEvent:
    incoming = IncomingCall(call.uniqueid, call.caller, call.name, "main", START)
    record = CallRecord(incoming, intent=intent, outcome=CallOutcome.ROUTED, ended_at=START)
    (event,) = to_write(record).events
    return event


def agent_tracker(call: Channel) -> list[NewTimelineEvent]:
    """``AgentCallTimeline``'s events of the call (written without an intent)."""
    return [
        NewTimelineEvent(f"voice:{call.uniqueid}:{kind}:a-1", "c1", START, "voice", kind)
        for kind in (AGENT_ANSWERED, AGENT_ENDED)
    ]


def test_an_engine_call_with_the_bridge_and_the_tracker_is_one_contact() -> None:
    switch = Switch()
    call = switch.agent_call("+15551230001", talk_s=60, hold_s=20)
    bridge = [e.to_timeline("c1") for e in bridge_events(switch.take_events())]
    assert [e.event_type for e in bridge if e.intent == "billing"] == [
        "call.ivr_routed", "call.transferred", "call.answered_by_agent", "call.held",
        "call.resumed", "call.ended",
    ]  # fmt: skip
    stored = history([*bridge, engine_call(call, "billing"), *agent_tracker(call)])
    (billing,) = rank_intents(stored, NOW, POLICY, INTENTS)
    assert (billing.contacts, billing.total_contacts) == (1, 1)
    assert billing.reason == "billing: 1 of last 1 contact, latest 1 day ago"


def test_a_call_the_dialplan_routed_without_the_engine_is_one_contact() -> None:
    switch = Switch()
    call = switch.inbound("+15551230002")
    switch.answer(call)
    switch.fallback(call)
    switch.advance(20)
    switch.user_event(
        call, "IvrRouted", Intent="billing", Target="queue:billing", Customer="",
        Decision="dialplan-fallback", Outcome="", AgiStatus="FAILURE", Agent="",
    )  # fmt: skip
    switch.user_event(call, "IvrOverflow", Intent="billing", Target="queue:billing", Tried="")
    switch.advance(60)
    switch.hangup(call)
    bridge = [e.to_timeline("c1") for e in bridge_events(switch.take_events())]
    assert [e.event_type for e in bridge] == [
        "call.started", "call.ivr_fallback", "call.ivr_routed", "call.overflowed", "call.ended",
    ]  # fmt: skip
    (billing,) = rank_intents(history(bridge), NOW, POLICY, INTENTS)
    assert (billing.contacts, billing.total_contacts) == (1, 1)
