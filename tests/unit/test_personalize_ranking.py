"""rank_intents: window, recency weighting, open cases, order and reason strings."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from test_personalize_helpers import INTENTS, NOW, ev, five_of_six_billing

from ivr_engine.domain.models import HistoryEvent, RankingPolicy
from ivr_engine.personalize import FUTURE_SKEW, rank_intents

POLICY = RankingPolicy()


def rank(*events: HistoryEvent, policy: RankingPolicy = POLICY) -> list[str]:
    return [s.intent for s in rank_intents(events, NOW, policy, INTENTS)]


def test_no_events_no_ranking() -> None:
    assert rank_intents((), NOW, POLICY, INTENTS) == ()


def test_five_of_six_billing_ranks_billing_first_with_reason() -> None:
    scores = rank_intents(five_of_six_billing(), NOW, POLICY, INTENTS)
    assert [s.intent for s in scores] == ["billing", "tech_support"]
    billing = scores[0]
    assert (billing.contacts, billing.total_contacts) == (5, 6)
    assert billing.latest_at == NOW - timedelta(days=2)
    assert billing.open_case is False
    assert billing.reason == "billing: 5 of last 6 contacts, latest 2 days ago"
    assert scores[1].reason == "tech_support: 1 of last 6 contacts, latest 15 days ago"


def test_weight_is_half_life_decay() -> None:
    (only,) = rank_intents((ev(30, "billing"), ev(0, "billing")), NOW, POLICY, INTENTS)
    assert only.score == pytest.approx(1.5)
    (other,) = rank_intents((ev(60, "billing"),), NOW, POLICY, INTENTS)
    assert other.score == pytest.approx(0.25)


def test_recency_beats_old_frequency() -> None:
    old_billing = [ev(200 + i, "billing") for i in range(3)]
    recent_tech = [ev(1, "tech_support"), ev(3, "tech_support")]
    assert rank(*old_billing, *recent_tech) == ["tech_support", "billing"]


def test_input_order_does_not_matter() -> None:
    events = [*five_of_six_billing(), ev(5, "outage", case_id="C9", event_type="case.opened")]
    expected = rank_intents(events, NOW, POLICY, INTENTS)
    for seed in range(5):
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        assert rank_intents(shuffled, NOW, POLICY, INTENTS) == expected


def test_unknown_intents_and_intentless_events_are_not_contacts() -> None:
    scores = rank_intents(
        (ev(1, "billing"), ev(1, "lottery"), ev(2, None, event_type="chat.message")),
        NOW,
        POLICY,
        INTENTS,
    )
    assert [(s.intent, s.contacts, s.total_contacts) for s in scores] == [("billing", 1, 1)]
    assert scores[0].reason == "billing: 1 of last 1 contact, latest 1 day ago"


def test_max_age_days() -> None:
    policy = RankingPolicy(max_age_days=90)
    assert rank(ev(91, "billing"), ev(89, "outage"), policy=policy) == ["outage"]
    assert rank(ev(90, "billing"), policy=policy) == ["billing"]  # the boundary is inside


def test_max_events_keeps_the_newest() -> None:
    policy = RankingPolicy(max_events=3, half_life_days=1000)
    events = [ev(10 + i, "billing") for i in range(5)] + [ev(1, "outage"), ev(2, "outage")]
    scores = rank_intents(events, NOW, policy, INTENTS)
    assert [(s.intent, s.contacts, s.total_contacts) for s in scores] == [
        ("outage", 2, 3),
        ("billing", 1, 3),
    ]


def test_max_events_counts_every_event_type() -> None:
    policy = RankingPolicy(max_events=2)
    events = [ev(1, None, event_type="chat.message"), ev(2, None, event_type="email.received")]
    assert rank(*events, ev(3, "billing"), policy=policy) == []


def test_future_events_beyond_skew_are_ignored() -> None:
    future = HistoryEvent(NOW + timedelta(days=1), "voice", "call.ivr", "billing")
    assert rank(future, ev(10, "outage")) == ["outage"]


def test_future_events_within_skew_count_as_now() -> None:
    soon = HistoryEvent(NOW + FUTURE_SKEW, "voice", "call.ivr", "billing")
    (only,) = rank_intents((soon,), NOW, POLICY, INTENTS)
    assert only.score == pytest.approx(1.0)
    assert only.reason == "billing: 1 of last 1 contact, latest just now"


def test_naive_datetimes_are_utc() -> None:
    naive = HistoryEvent((NOW - timedelta(days=2)).replace(tzinfo=None), "voice", "x", "billing")
    (only,) = rank_intents((naive,), NOW, POLICY, INTENTS)
    assert only.reason == "billing: 1 of last 1 contact, latest 2 days ago"


@pytest.mark.parametrize(
    ("age", "text"),
    [
        (timedelta(0), "just now"),
        (timedelta(minutes=59), "just now"),
        (timedelta(hours=1), "1 hour ago"),
        (timedelta(hours=23, minutes=59), "23 hours ago"),
        (timedelta(days=1), "1 day ago"),
        (timedelta(days=1, hours=23), "1 day ago"),
        (timedelta(days=2), "2 days ago"),
        (timedelta(days=364), "364 days ago"),
    ],
)
def test_reason_age_text(age: timedelta, text: str) -> None:
    event = HistoryEvent(NOW - age, "voice", "call.ivr", "billing")
    (only,) = rank_intents((event,), NOW, POLICY, INTENTS)
    assert only.reason == f"billing: 1 of last 1 contact, latest {text}"


# --------------------------------------------------------------------------- open cases


def _case(days: float, event_type: str, intent: str | None = None, **kw: str) -> HistoryEvent:
    return ev(days, intent, event_type=event_type, case_id=kw.pop("case_id", "C1"), **kw)


def test_open_case_beats_higher_frequency() -> None:
    events = [ev(1 + i, "billing") for i in range(5)]
    events += [_case(20, "case.opened", "outage"), _case(1, "chat.message", channel="chat")]
    scores = rank_intents(events, NOW, POLICY, INTENTS)
    assert [s.intent for s in scores] == ["outage", "billing"]
    assert scores[0].open_case and not scores[1].open_case
    assert scores[0].reason == "outage: open case C1, last activity by chat 1 day ago"
    assert scores[0].contacts == 1 and scores[0].total_contacts == 6


def test_closed_case_does_not_boost() -> None:
    events = [ev(1, "billing"), ev(2, "billing")]
    events += [_case(20, "case.opened", "outage"), _case(10, "case.closed")]
    scores = rank_intents(events, NOW, POLICY, INTENTS)
    assert [(s.intent, s.open_case) for s in scores] == [("billing", False), ("outage", False)]
    assert scores[1].reason == "outage: 1 of last 3 contacts, latest 20 days ago"


def test_reopened_case_is_open() -> None:
    events = [
        _case(20, "case.opened", "outage"),
        _case(10, "case.closed"),
        _case(5, "case.reopened", channel="email"),
    ]
    (only,) = rank_intents(events, NOW, POLICY, INTENTS)
    assert only.open_case
    assert only.reason == "outage: open case C1, last activity by email 5 days ago"


def test_close_at_the_same_instant_wins() -> None:
    events = [_case(3, "case.opened", "outage"), _case(1, "case.note"), _case(1, "case.closed")]
    (only,) = rank_intents(events, NOW, POLICY, INTENTS)
    assert not only.open_case


def test_case_intent_is_its_newest_intent() -> None:
    events = [_case(9, "case.opened", "billing"), _case(4, "case.updated", "cancel")]
    scores = rank_intents(events, NOW, POLICY, INTENTS)
    assert [(s.intent, s.open_case) for s in scores] == [("cancel", True), ("billing", False)]


def test_case_without_menu_intent_is_ignored() -> None:
    events = [_case(2, "case.opened"), _case(1, "case.updated", "lottery"), ev(3, "billing")]
    assert [(s.intent, s.open_case) for s in rank_intents(events, NOW, POLICY, INTENTS)] == [
        ("billing", False)
    ]


def test_open_cases_newest_activity_first() -> None:
    events = [
        _case(9, "case.opened", "billing", case_id="A"),
        _case(8, "case.opened", "moving", case_id="B"),
        _case(2, "case.note", case_id="B"),
    ]
    scores = rank_intents(events, NOW, POLICY, INTENTS)
    assert [s.intent for s in scores] == ["moving", "billing"]
    assert scores[0].reason == "moving: open case B, last activity by voice 2 days ago"


def test_two_open_cases_same_intent_reports_most_active() -> None:
    events = [
        _case(9, "case.opened", "billing", case_id="A"),
        _case(8, "case.opened", "billing", case_id="B"),
        _case(1, "case.note", case_id="A", channel="sms"),
    ]
    (only,) = rank_intents(events, NOW, POLICY, INTENTS)
    assert only.reason == "billing: open case A, last activity by sms 1 day ago"


def test_open_case_boost_can_be_disabled() -> None:
    events = [ev(1 + i, "billing") for i in range(5)] + [_case(10, "case.opened", "outage")]
    policy = RankingPolicy(open_case_boost=False)
    scores = rank_intents(events, NOW, policy, INTENTS)
    assert [(s.intent, s.open_case) for s in scores] == [("billing", False), ("outage", True)]


# --------------------------------------------------------------------------- ties


def test_ties_broken_by_latest_then_name() -> None:
    # same score: both one contact at the same age -> name order
    assert rank(ev(3, "outage"), ev(3, "billing"), ev(3, "cancel")) == [
        "billing",
        "cancel",
        "outage",
    ]


def test_equal_score_newer_latest_first() -> None:
    # 0.5 + 0.5 == 1.0 with half-life 1: tech has score 1 latest 1 day; billing score 1 today
    policy = RankingPolicy(half_life_days=1.0)
    events = [ev(1, "tech_support"), ev(1, "tech_support"), ev(0, "billing")]
    scores = rank_intents(events, NOW, policy, INTENTS)
    assert scores[0].score == scores[1].score == pytest.approx(1.0)
    assert [s.intent for s in scores] == ["billing", "tech_support"]


def test_same_input_same_output() -> None:
    events = five_of_six_billing()
    assert rank_intents(events, NOW, POLICY, INTENTS) == rank_intents(events, NOW, POLICY, INTENTS)
