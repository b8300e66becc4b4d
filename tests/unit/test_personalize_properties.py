"""Property tests: invariants of the personalisation core for arbitrary histories and menus."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from test_personalize_helpers import FIELDS, INTENTS, NOW, history, sample_menu

from ivr_engine.domain.models import (
    DigitPolicy,
    HistoryEvent,
    IntentScore,
    KnownField,
    Menu,
    MenuOption,
    PresentedOption,
    RankingPolicy,
)
from ivr_engine.personalize import (
    decide_menu,
    default_entries,
    interpret_menu_choice,
    menu_prompt_sequence,
    plan_fields,
    rank_intents,
    reorder_menu,
)
from ivr_engine.personalize.contacts import FOLLOW_UP_EVENT_TYPES
from ivr_engine.personalize.ranking import windowed_events
from ivr_engine.personalize.reorder import KEY_ORDER, key_rank

# for this module's tests only (a profile loaded here would change every later module's)
PROPERTY = settings(max_examples=150, deadline=None)

EVENT_TYPES = (
    *("call.ivr", "chat.message", "case.opened", "case.closed", "call.ivr_routed"),
    *("call.ended", "message.inbound", "message.outbound", "call.agent_answered"),
)
events_st = st.builds(
    HistoryEvent,
    occurred_at=st.integers(-3 * 86400, 500 * 86400).map(lambda s: NOW - timedelta(seconds=s)),
    channel=st.sampled_from(["voice", "chat", "email", "sms"]),
    event_type=st.sampled_from(EVENT_TYPES),
    intent=st.sampled_from([*INTENTS, "lottery", None]),
    case_id=st.sampled_from([None, None, "A", "B", "C"]),
)
histories_st = st.lists(events_st, max_size=40)
ranking_policies_st = st.builds(
    RankingPolicy,
    half_life_days=st.floats(0.5, 365),
    max_events=st.integers(1, 60),
    max_age_days=st.floats(1, 400),
    open_case_boost=st.booleans(),
    open_case_max_age_days=st.floats(0.5, 400),
)
digit_policies_st = st.sampled_from(list(DigitPolicy))


@st.composite
def menus_st(draw: st.DrawFn) -> Menu:
    """Arbitrary menus: unique digits in any order, any pinned options."""
    count = draw(st.integers(1, len(KEY_ORDER)))
    digits = draw(st.permutations(list(KEY_ORDER)))[:count]
    options = tuple(
        MenuOption(f"i{n}", f"I{n}", f"p/i{n}", digit, pinned=draw(st.booleans()))
        for n, digit in enumerate(digits)
    )
    return replace(sample_menu(draw(digit_policies_st)), options=options)


def scores_st(intents: list[str]) -> st.SearchStrategy[list[IntentScore]]:
    one = st.builds(
        IntentScore,
        intent=st.sampled_from([*intents, "unknown"]),
        score=st.floats(0, 10),
        contacts=st.integers(0, 9),
        total_contacts=st.just(9),
        latest_at=st.just(NOW),
        open_case=st.booleans(),
        reason=st.just("r"),
    )
    return st.lists(one, max_size=len(intents) + 2)


def assert_is_valid_reordering(menu: Menu, entries: tuple[PresentedOption, ...]) -> None:
    assert sorted(e.option.intent for e in entries) == sorted(o.intent for o in menu.options)
    assert sorted(e.digit for e in entries) == sorted(o.digit for o in menu.options)
    for entry in entries:
        if entry.option.pinned or menu.digit_policy is DigitPolicy.STABLE:
            assert entry.digit == entry.option.digit
    pinned = [e for e in entries if e.option.pinned]
    if entries != default_entries(menu):
        assert list(entries[len(entries) - len(pinned) :]) == pinned  # pinned announced last
    if menu.digit_policy is DigitPolicy.POSITIONAL:
        unpinned = [e.digit for e in entries if not e.option.pinned]
        assert unpinned == sorted(unpinned, key=key_rank) or entries == default_entries(menu)


@PROPERTY
@given(menus_st(), st.data())
def test_reorder_is_a_permutation_for_any_menu(menu: Menu, data: st.DataObject) -> None:
    ranking = data.draw(scores_st([o.intent for o in menu.options]))
    assert_is_valid_reordering(menu, reorder_menu(menu, ranking))


@PROPERTY
@given(histories_st, digit_policies_st, ranking_policies_st)
def test_sample_menu_invariants_for_any_history(
    events: list[HistoryEvent], policy: DigitPolicy, ranking: RankingPolicy
) -> None:
    menu = sample_menu(policy, ranking=ranking)
    decision = decide_menu(menu, history(*events), NOW)
    assert_is_valid_reordering(menu, decision.entries)
    assert decision.entries[-1].digit == "0"
    assert decision.entries[-1].option.intent == "operator"
    for entry in decision.entries:
        assert interpret_menu_choice(decision, entry.digit) == entry.option.intent
    sequence = menu_prompt_sequence(decision, menu.prompts, greeting=True)
    assert len(sequence) == 1 + 4 * len(menu.options)
    assert decision.reasons and decision.personalised


@PROPERTY
@given(histories_st, ranking_policies_st)
def test_ranking_invariants(events: list[HistoryEvent], policy: RankingPolicy) -> None:
    scores = rank_intents(events, NOW, policy, INTENTS)
    intents = [s.intent for s in scores]
    assert len(intents) == len(set(intents)) and set(intents) <= set(INTENTS)
    total = sum(s.contacts for s in scores)
    for s in scores:
        assert s.total_contacts == total
        assert s.open_case or s.contacts >= 1
        assert 0 < s.score <= s.contacts + 1e-9 or (s.open_case and s.contacts == 0)
        assert s.reason.startswith(f"{s.intent}: ")
    if policy.open_case_boost:
        flags = [s.open_case for s in scores]
        assert flags == sorted(flags, reverse=True)  # open cases first


@PROPERTY
@given(histories_st, ranking_policies_st, st.randoms(use_true_random=False))
def test_ranking_ignores_input_order(
    events: list[HistoryEvent], policy: RankingPolicy, rnd: random.Random
) -> None:
    shuffled = events[:]
    rnd.shuffle(shuffled)
    assert rank_intents(shuffled, NOW, policy, INTENTS) == rank_intents(
        events, NOW, policy, INTENTS
    )


@PROPERTY
@given(histories_st, ranking_policies_st)
def test_pre_windowed_input_ranks_the_same(
    events: list[HistoryEvent], policy: RankingPolicy
) -> None:
    window = windowed_events(events, NOW, policy)
    assert rank_intents(window, NOW, policy, INTENTS) == rank_intents(events, NOW, policy, INTENTS)


@PROPERTY
@given(histories_st, ranking_policies_st, st.integers(301, 10**6))
def test_far_future_events_change_nothing(
    events: list[HistoryEvent], policy: RankingPolicy, ahead_s: int
) -> None:
    future = HistoryEvent(NOW + timedelta(seconds=ahead_s), "voice", "call.ivr", "billing", "A")
    expected = rank_intents(events, NOW, policy, INTENTS)
    assert rank_intents([*events, future], NOW, policy, INTENTS) == expected


@PROPERTY
@given(
    st.lists(st.sampled_from(sorted(FIELDS)), max_size=4),
    st.dictionaries(st.sampled_from(sorted(FIELDS)), st.text("0123456789 ", max_size=8)),
    st.booleans(),
)
def test_field_plan_partitions_required_fields(
    required: list[str], values: dict[str, str], verified: bool
) -> None:
    option = MenuOption("x", "X", "p/x", "1", required_fields=tuple(required))
    known = {n: KnownField(n, v, "chat", NOW) for n, v in values.items()}
    plan = plan_fields(option, FIELDS, known, caller_verified=verified, now=NOW)
    asked = [s.name for s in plan.to_ask]
    assert set(plan.prefilled) | set(asked) == set(required)
    assert not set(plan.prefilled) & set(asked)
    assert len(plan.reasons) == len(set(required))
    assert plan.readable == set(plan.prefilled)
    for name in plan.prefilled:
        assert verified or not FIELDS[name].sensitive  # unverified: every sensitive one asked
    for spec in plan.to_ask:
        field = known.get(spec.name)
        fits = field is not None and field.value.strip() != "" and spec.accepts(field.value)
        assert not fits or (spec.sensitive and not verified)


# --------------------------------------------------------------------------- contacts, not events

# A policy whose window holds every generated event: adding events cuts none out.
WIDE = RankingPolicy(max_events=1000, max_age_days=1000)
follow_ups_st = st.lists(
    st.builds(
        HistoryEvent,
        occurred_at=events_st.map(lambda e: e.occurred_at),
        channel=st.sampled_from(["voice", "chat", "sms"]),
        event_type=st.sampled_from(sorted(FOLLOW_UP_EVENT_TYPES)),
        intent=st.sampled_from([*INTENTS, None]),
    ),
    max_size=20,
)


@PROPERTY
@given(histories_st, follow_ups_st)
def test_follow_up_events_change_no_ranking(
    events: list[HistoryEvent], follow_ups: list[HistoryEvent]
) -> None:
    expected = rank_intents(events, NOW, WIDE, INTENTS)
    assert rank_intents([*events, *follow_ups], NOW, WIDE, INTENTS) == expected


@PROPERTY
@given(
    st.lists(events_st.filter(lambda e: e.event_type != "call.ivr_routed"), max_size=40),
    st.data(),
)
def test_the_bridge_routing_of_an_engine_call_changes_no_ranking(
    events: list[HistoryEvent], data: st.DataObject
) -> None:
    routings = [
        HistoryEvent(
            e.occurred_at + timedelta(seconds=data.draw(st.integers(0, 600))),
            "voice",
            "call.ivr_routed",
            e.intent,
        )
        for e in events
        if e.event_type == "call.ivr" and e.intent is not None
    ]
    expected = rank_intents(events, NOW, WIDE, INTENTS)
    assert rank_intents([*events, *routings], NOW, WIDE, INTENTS) == expected


@PROPERTY
@given(histories_st, ranking_policies_st)
def test_a_case_is_at_most_one_contact_per_intent(
    events: list[HistoryEvent], policy: RankingPolicy
) -> None:
    window = windowed_events(events, NOW, policy)
    for s in rank_intents(events, NOW, policy, INTENTS):
        mine = [e for e in window if e.intent == s.intent]
        cases = {e.case_id for e in mine if e.case_id is not None}
        loose = [e for e in mine if e.case_id is None and e.event_type not in FOLLOW_UP_EVENT_TYPES]
        assert s.contacts <= len(cases) + len(loose)


@PROPERTY
@given(histories_st, ranking_policies_st, st.floats(0.5, 400))
def test_a_longer_open_case_age_closes_no_case(
    events: list[HistoryEvent], policy: RankingPolicy, longer: float
) -> None:
    shorter = replace(policy, open_case_max_age_days=min(longer, policy.open_case_max_age_days))
    wider = replace(policy, open_case_max_age_days=max(longer, policy.open_case_max_age_days))
    open_short = {s.intent for s in rank_intents(events, NOW, shorter, INTENTS) if s.open_case}
    open_wide = {s.intent for s in rank_intents(events, NOW, wider, INTENTS) if s.open_case}
    assert open_short <= open_wide
