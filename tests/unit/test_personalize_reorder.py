"""reorder_menu: POSITIONAL and STABLE digit policies, pinned options, default order."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_personalize_helpers import INTENTS, NOW, five_of_six_billing, sample_menu, score

from ivr_engine.domain.models import DigitPolicy, MenuOption, RankingPolicy
from ivr_engine.personalize import default_entries, rank_intents, reorder_menu
from ivr_engine.personalize.reorder import key_rank


def layout(entries: tuple[object, ...]) -> list[tuple[str, str]]:
    return [(e.digit, e.option.intent) for e in entries]  # type: ignore[attr-defined]


DEFAULT = [
    ("1", "new_service"),
    ("2", "tech_support"),
    ("3", "moving"),
    ("4", "outage"),
    ("5", "cancel"),
    ("6", "billing"),
    ("0", "operator"),
]


@pytest.mark.parametrize("policy", list(DigitPolicy))
def test_empty_ranking_is_default_menu(policy: DigitPolicy) -> None:
    menu = sample_menu(policy)
    assert reorder_menu(menu, ()) == default_entries(menu)
    assert layout(reorder_menu(menu, ())) == DEFAULT


def test_billing_caller_positional_billing_on_key_1() -> None:
    # tech_support's one contact is below ranking.min_contacts (2): it keeps its place
    menu = sample_menu(DigitPolicy.POSITIONAL)
    ranking = rank_intents(five_of_six_billing(), NOW, RankingPolicy(), INTENTS)
    assert layout(reorder_menu(menu, ranking)) == [
        ("1", "billing"),
        ("2", "new_service"),
        ("3", "tech_support"),
        ("4", "moving"),
        ("5", "outage"),
        ("6", "cancel"),
        ("0", "operator"),
    ]


def test_with_min_contacts_1_one_contact_moves_up_too() -> None:
    menu = sample_menu(DigitPolicy.POSITIONAL, ranking=RankingPolicy(min_contacts=1))
    ranking = rank_intents(five_of_six_billing(), NOW, menu.ranking, INTENTS)
    assert layout(reorder_menu(menu, ranking)) == [
        ("1", "billing"),
        ("2", "tech_support"),
        ("3", "new_service"),
        ("4", "moving"),
        ("5", "outage"),
        ("6", "cancel"),
        ("0", "operator"),
    ]


def test_billing_caller_stable_billing_announced_first_keeps_6() -> None:
    menu = sample_menu(DigitPolicy.STABLE)
    ranking = rank_intents(five_of_six_billing(), NOW, RankingPolicy(), INTENTS)
    assert layout(reorder_menu(menu, ranking)) == [
        ("6", "billing"),
        ("1", "new_service"),
        ("2", "tech_support"),
        ("3", "moving"),
        ("4", "outage"),
        ("5", "cancel"),
        ("0", "operator"),
    ]


@pytest.mark.parametrize("policy", list(DigitPolicy))
def test_one_contact_does_not_move_an_option(policy: DigitPolicy) -> None:
    """A caller who pressed 6 for billing once presses 6 again next time (positional)."""
    menu = sample_menu(policy)
    assert reorder_menu(menu, (score("billing", 0.9, contacts=1),)) == default_entries(menu)
    assert layout(reorder_menu(menu, (score("billing", 1.8, contacts=2),)))[0][1] == "billing"


def test_one_contact_with_an_open_case_moves() -> None:
    ranking = (score("outage", 0.9, contacts=1, open_case=True),)
    assert layout(reorder_menu(sample_menu(), ranking))[0] == ("1", "outage")


@pytest.mark.parametrize("policy", list(DigitPolicy))
def test_pinned_operator_ranked_first_stays_on_0_and_last(policy: DigitPolicy) -> None:
    menu = sample_menu(policy)
    entries = reorder_menu(menu, (score("operator", 9.0), score("cancel", 1.0)))
    assert entries[-1].digit == "0" and entries[-1].option.intent == "operator"
    assert entries[0].option.intent == "cancel"


def test_only_pinned_ranked_is_default() -> None:
    menu = sample_menu()
    assert reorder_menu(menu, (score("operator", 3.0),)) == default_entries(menu)


def test_zero_score_without_open_case_does_not_move() -> None:
    menu = sample_menu()
    assert reorder_menu(menu, (score("billing", 0.0),)) == default_entries(menu)


def test_zero_score_open_case_moves() -> None:
    entries = reorder_menu(sample_menu(), (score("outage", 0.0, open_case=True),))
    assert layout(entries)[0] == ("1", "outage")


def test_unknown_and_duplicate_ranked_intents_are_skipped() -> None:
    ranking = (score("lottery", 5.0), score("moving", 2.0), score("moving", 1.0))
    assert layout(reorder_menu(sample_menu(), ranking))[:2] == [
        ("1", "moving"),
        ("2", "new_service"),
    ]


def test_ranking_order_is_followed_not_score() -> None:
    ranking = (score("cancel", 1.0), score("outage", 4.0))
    assert [i for _, i in layout(reorder_menu(sample_menu(), ranking))][:3] == [
        "cancel",
        "outage",
        "new_service",
    ]


def test_positional_uses_only_unpinned_digits_ascending() -> None:
    # default digits out of order, with * and # and a pinned option in the middle
    options = (
        MenuOption("a", "A", "p/a", "9"),
        MenuOption("b", "B", "p/b", "#"),
        MenuOption("op", "Op", "p/op", "1", pinned=True),
        MenuOption("c", "C", "p/c", "0"),
        MenuOption("d", "D", "p/d", "3"),
        MenuOption("star", "S", "p/s", "*", pinned=True),
    )
    menu = replace(sample_menu(), options=options)
    entries = reorder_menu(menu, (score("c", 1.0),))
    assert layout(entries) == [
        ("3", "c"),
        ("9", "a"),
        ("0", "b"),
        ("#", "d"),
        ("1", "op"),
        ("*", "star"),
    ]
    assert reorder_menu(menu, ()) == default_entries(menu)  # default kept exactly


def test_key_rank_order() -> None:
    keys = ["#", "0", "*", "9", "1", "5"]
    assert sorted(keys, key=key_rank) == ["1", "5", "9", "0", "*", "#"]
    assert key_rank("x") > key_rank("#")
