"""rank_intents counts contacts, not events: follow-ups, cases, a call recorded twice;
and an open case stops being open after ``open_case_max_age_days`` without activity."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_personalize_helpers import INTENTS, NOW, history, sample_menu

from ivr_engine.domain.models import HistoryEvent, RankingPolicy
from ivr_engine.personalize import decide_menu, rank_intents
from ivr_engine.personalize.contacts import (
    FOLLOW_UP_EVENT_TYPES,
    SAME_CALL_AFTER,
    SAME_CALL_BEFORE,
)

POLICY = RankingPolicy()


def counted(*events: HistoryEvent, policy: RankingPolicy = POLICY) -> list[tuple[str, int, int]]:
    return [
        (s.intent, s.contacts, s.total_contacts)
        for s in rank_intents(events, NOW, policy, INTENTS)
        if s.contacts
    ]


def at(
    days_ago: float,
    event_type: str,
    intent: str | None = "billing",
    *,
    channel: str = "voice",
    case_id: str | None = None,
    plus_s: float = 0.0,
) -> HistoryEvent:
    moment = NOW - timedelta(days=days_ago) + timedelta(seconds=plus_s)
    return HistoryEvent(moment, channel, event_type, intent, case_id)


def engine_call_with_bridge(days_ago: float, intent: str = "billing") -> list[HistoryEvent]:
    """What the engine and the call-event bridge write for one routed, answered call."""
    return [
        at(days_ago, "call.started", None),
        at(days_ago, "call.ivr", intent),  # the engine's record, timed at the call's start
        at(days_ago, "call.ivr_routed", intent, plus_s=40),
        at(days_ago, "call.transferred", intent, plus_s=41),
        at(days_ago, "call.answered_by_agent", intent, plus_s=45),
        at(days_ago, "call.agent_answered", intent, plus_s=45),
        at(days_ago, "call.held", intent, plus_s=60),
        at(days_ago, "call.resumed", intent, plus_s=80),
        at(days_ago, "call.agent_ended", intent, plus_s=200),
        at(days_ago, "call.ended", intent, plus_s=200),
    ]


@pytest.mark.parametrize("event_type", sorted(FOLLOW_UP_EVENT_TYPES))
def test_follow_up_events_are_not_contacts(event_type: str) -> None:
    assert counted(at(1, event_type), at(2, "call.ivr", "outage")) == [("outage", 1, 1)]


def test_one_call_with_the_bridge_is_one_contact() -> None:
    assert counted(*engine_call_with_bridge(1)) == [("billing", 1, 1)]
    (billing,) = rank_intents(engine_call_with_bridge(1), NOW, POLICY, INTENTS)
    assert billing.reason == "billing: 1 of last 1 contact, latest 1 day ago"


def test_one_billing_call_does_not_move_billing() -> None:
    menu = sample_menu()
    decision = decide_menu(menu, history(*engine_call_with_bridge(1)), NOW)
    assert [e.option.intent for e in decision.entries][:1] == ["new_service"]
    assert decision.shortcut is None


def test_five_calls_with_the_bridge_and_one_chat_read_five_of_six() -> None:
    calls = [e for days in (2, 20, 41, 50, 60) for e in engine_call_with_bridge(days)]
    chat = at(15, "message.inbound", "tech_support", channel="chat", case_id="T1")
    scores = rank_intents([*calls, chat], NOW, RankingPolicy(max_events=100), INTENTS)
    assert scores[0].reason == "billing: 5 of last 6 contacts, latest 2 days ago"


def test_fallback_call_routed_by_the_dialplan_is_one_contact() -> None:
    fallback = [
        at(1, "call.started", None),
        at(1, "call.ivr_fallback", None, plus_s=1),
        at(1, "call.ivr_routed", "billing", plus_s=30),
        at(1, "call.overflowed", "billing", plus_s=31),
        at(1, "call.ended", "billing", plus_s=90),
    ]
    assert counted(*fallback) == [("billing", 1, 1)]


def test_fallback_call_minutes_after_an_engine_call_counts_too() -> None:
    engine = engine_call_with_bridge(1)
    fallback = at(1, "call.ivr_routed", "billing", plus_s=300)  # the engine went down
    assert counted(*engine, fallback) == [("billing", 2, 2)]


def test_routing_folds_only_into_an_engine_call_of_its_intent_and_time() -> None:
    engine = at(1, "call.ivr", "billing")
    after = SAME_CALL_AFTER.total_seconds()
    assert counted(engine, at(1, "call.ivr_routed", plus_s=after)) == [("billing", 1, 1)]
    assert counted(engine, at(1, "call.ivr_routed", plus_s=after + 1)) == [("billing", 2, 2)]
    before = -SAME_CALL_BEFORE.total_seconds()
    assert counted(engine, at(1, "call.ivr_routed", plus_s=before)) == [("billing", 1, 1)]
    assert counted(engine, at(1, "call.ivr_routed", plus_s=before - 1)) == [("billing", 2, 2)]
    other = at(1, "call.ivr_routed", "outage", plus_s=30)
    assert sorted(counted(engine, other)) == [("billing", 1, 2), ("outage", 1, 2)]


def test_a_conversation_is_one_contact_per_intent() -> None:
    chat = [at(3 - i / 10, "message.inbound", channel="chat", case_id="C1") for i in range(6)]
    replies = [at(3 - i / 10, "message.outbound", channel="chat", case_id="C1") for i in range(6)]
    joined = at(1, "call.ivr", case_id="C1")  # the caller pressed 1 to continue it
    other = at(2, "message.inbound", "moving", channel="chat", case_id="C1")
    assert counted(*chat, *replies, joined, other) == [("billing", 1, 2), ("moving", 1, 2)]
    (billing, _) = rank_intents([*chat, joined, other], NOW, POLICY, INTENTS)
    assert billing.latest_at == NOW - timedelta(days=1)  # its newest event


def test_messages_outside_a_case_each_count() -> None:
    sms = [at(i, "message.inbound", channel="sms") for i in (1, 2, 3)]
    assert counted(*sms) == [("billing", 3, 3)]


# --------------------------------------------------------------------------- case age


def test_old_open_case_no_longer_beats_recent_history() -> None:
    billing_sms = at(300, "message.inbound", channel="sms", case_id="old-sms")
    calls = [at(1 + i / 100, "call.ivr", "tech_support") for i in range(20)]  # within max_events
    menu = sample_menu()
    scores = rank_intents([billing_sms, *calls], NOW, menu.ranking, INTENTS)
    assert [(s.intent, s.open_case) for s in scores] == [
        ("tech_support", False),
        ("billing", False),
    ]
    decision = decide_menu(menu, history(billing_sms, *calls), NOW)
    assert decision.entries[0].option.intent == "tech_support"
    assert decision.shortcut is None or decision.shortcut.continue_case is None


@pytest.mark.parametrize(("quiet_days", "is_open"), [(13.9, True), (14.0, True), (14.1, False)])
def test_a_case_quiet_for_longer_than_the_setting_counts_as_closed(
    quiet_days: float, is_open: bool
) -> None:
    events = [
        at(40, "case.opened", "outage", case_id="C1"),
        at(quiet_days, "case.note", None, case_id="C1"),
    ]
    (only,) = rank_intents(events, NOW, POLICY, INTENTS)
    assert only.open_case is is_open
    if not is_open:
        assert only.reason == "outage: 1 of last 1 contact, latest 40 days ago"


def test_open_case_max_age_is_a_setting() -> None:
    events = [at(30, "message.inbound", "moving", channel="chat", case_id="C2")]
    short = rank_intents(events, NOW, POLICY, INTENTS)
    longer = rank_intents(events, NOW, RankingPolicy(open_case_max_age_days=31), INTENTS)
    assert (short[0].open_case, longer[0].open_case) == (False, True)
    assert longer[0].reason == "moving: open case C2, last activity by chat 30 days ago"
