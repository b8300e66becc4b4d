"""One rule for "is this case open": the menu ranking and the conversation API agree."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from test_personalize_helpers import INTENTS, NOW, sample_menu

from ivr_engine.api.conversation_rules import conversation_state, open_case_max_age
from ivr_engine.domain.models import HistoryEvent, RankingPolicy
from ivr_engine.personalize import rank_intents
from ivr_engine.personalize.cases import CASE_CLOSED, case_state
from ivr_engine.ports import CaseEventHead

DAY = timedelta(days=1)


def test_a_case_is_closed_by_a_close_and_aged_out_when_quiet_too_long() -> None:
    assert case_state("message.inbound", NOW - 14 * DAY, NOW, 14) == "open"
    assert case_state("message.inbound", NOW - 14 * DAY - timedelta(seconds=1), NOW, 14) == (
        "aged_out"
    )
    assert case_state(CASE_CLOSED, NOW, NOW, 14) == "closed"
    assert case_state(CASE_CLOSED, NOW - 90 * DAY, NOW, 14) == "closed"
    assert case_state("call.ended", NOW + timedelta(minutes=3), NOW, 0.5) == "open"


def test_the_api_takes_the_largest_age_limit_of_the_menus_in_force() -> None:
    assert open_case_max_age({}) == RankingPolicy().open_case_max_age_days == 14
    short = sample_menu(ranking=RankingPolicy(open_case_max_age_days=3))
    long = sample_menu(ranking=RankingPolicy(open_case_max_age_days=30))
    assert open_case_max_age({"a": short}) == 3
    assert open_case_max_age({"a": short, "b": long}) == 30


def _head(seq: int, customer: str, days_ago: float, kind: str = "message.inbound") -> CaseEventHead:
    return CaseEventHead(seq, customer, NOW - days_ago * DAY, "chat", kind)


def test_a_conversation_is_open_while_some_customers_part_is() -> None:
    aged, closed = _head(1, "c1", 20), _head(2, "c2", 1, CASE_CLOSED)
    assert conversation_state((aged,), NOW, 14) == "aged_out"
    assert conversation_state((aged, closed), NOW, 14) == "aged_out"
    assert conversation_state((aged, closed), NOW, 30) == "open"
    assert conversation_state((closed,), NOW, 14) == "closed"
    assert conversation_state((aged, closed, _head(3, "c3", 2)), NOW, 14) == "open"
    newer_close = (_head(1, "c1", 20), _head(2, "c1", 20, CASE_CLOSED))
    assert conversation_state(newer_close, NOW, 14) == "closed"  # a close, not an age-out


_KINDS = st.sampled_from(["message.inbound", "message.outbound", "call.ended", CASE_CLOSED])
_EVENTS = st.lists(
    st.tuples(st.integers(0, 40 * 24 * 60), _KINDS), min_size=1, max_size=20
)  # (minutes ago, event type) of one customer's case


@settings(max_examples=300, deadline=None)
@given(events=_EVENTS, max_age=st.floats(0.5, 30))
def test_ranking_and_conversation_api_agree_on_open(
    events: list[tuple[int, str]], max_age: float
) -> None:
    history = [
        HistoryEvent(NOW - timedelta(minutes=m), "chat", kind, "billing", case_id="K")
        for m, kind in events
    ]
    heads = [
        CaseEventHead(seq, "c1", e.occurred_at, e.channel, e.event_type)
        for seq, e in enumerate(history)
    ]
    policy = RankingPolicy(open_case_max_age_days=max_age)
    scores = rank_intents(history, NOW, policy, INTENTS)
    in_ranking = any(s.open_case for s in scores if s.intent == "billing")
    assert in_ranking == (conversation_state(heads, NOW, max_age) == "open")
