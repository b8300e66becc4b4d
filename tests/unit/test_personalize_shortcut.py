"""offer_shortcut / evaluate_shortcut: thresholds, open cases, refusals and reasons."""

from __future__ import annotations

import pytest
from test_personalize_helpers import INTENTS, NOW, ev, sample_menu, score, with_option

from ivr_engine.domain.models import HistoryEvent, IntentScore, RankingPolicy, ShortcutPolicy
from ivr_engine.personalize import evaluate_shortcut, offer_shortcut, rank_intents


def ranked(*events: HistoryEvent) -> tuple[IntentScore, ...]:
    return rank_intents(events, NOW, RankingPolicy(), INTENTS)


def test_offer_for_dominant_frequent_intent() -> None:
    ranking = ranked(*(ev(0, "billing") for _ in range(3)), ev(0, "outage"))
    offer = offer_shortcut(sample_menu(), ranking)
    assert offer is not None
    assert (offer.intent, offer.prompt) == ("billing", "ivr-engine/shortcut-topic-billing")
    assert (offer.yes_digit, offer.no_digit) == ("1", "2")
    assert offer.reason == (
        "shortcut offered for billing: 3 contacts (min 3), 75% of the weighted score (min 60%)"
    )


def test_share_exactly_min_share_is_offered() -> None:
    # weights are 1.0 at age 0: 3 / (3 + 2) == 0.6 exactly
    ranking = ranked(*(ev(0, "billing") for _ in range(3)), ev(0, "outage"), ev(0, "cancel"))
    offer = offer_shortcut(sample_menu(), ranking)
    assert offer is not None and offer.intent == "billing"


def test_share_just_below_min_share_is_refused() -> None:
    menu = sample_menu(shortcut=ShortcutPolicy(min_share=0.61))
    ranking = ranked(*(ev(0, "billing") for _ in range(3)), ev(0, "outage"), ev(0, "cancel"))
    offer, reason = evaluate_shortcut(menu, ranking)
    assert offer is None
    assert reason == (
        "no shortcut for billing: 3 contacts (min 3), 60% of the weighted score (min 61%)"
    )


def test_min_contacts_minus_one_is_refused() -> None:
    ranking = ranked(ev(0, "billing"), ev(0, "billing"))  # share 100%, 2 contacts
    offer, reason = evaluate_shortcut(sample_menu(), ranking)
    assert offer is None
    assert reason == (
        "no shortcut for billing: 2 contacts (min 3), 100% of the weighted score (min 60%)"
    )
    lower = sample_menu(shortcut=ShortcutPolicy(min_contacts=2))
    assert offer_shortcut(lower, ranking) is not None


def test_open_case_is_offered_regardless_of_thresholds() -> None:
    ranking = ranked(
        ev(10, "outage", event_type="case.opened", case_id="C7"),
        *(ev(1, "billing") for _ in range(4)),
    )
    offer, reason = evaluate_shortcut(sample_menu(), ranking)
    assert offer is not None and offer.intent == "outage"
    assert reason == offer.reason == "shortcut offered for outage: open case"


def test_disabled_gives_nothing() -> None:
    menu = sample_menu(shortcut=ShortcutPolicy(enabled=False))
    ranking = ranked(*(ev(0, "billing") for _ in range(5)))
    assert evaluate_shortcut(menu, ranking) == (None, None)


def test_empty_ranking_gives_nothing() -> None:
    assert evaluate_shortcut(sample_menu(), ()) == (None, None)


def test_zero_score_top_gives_nothing() -> None:
    assert evaluate_shortcut(sample_menu(), (score("billing", 0.0, 5),)) == (None, None)


def test_never_for_pinned_even_with_open_case() -> None:
    ranking = (score("operator", 5.0, 5, open_case=True),)
    offer, reason = evaluate_shortcut(sample_menu(), ranking)
    assert offer is None and reason == "no shortcut for operator: pinned option"


def test_pinned_with_shortcut_prompt_still_refused() -> None:
    menu = with_option(sample_menu(), "operator", shortcut_prompt="ivr-engine/x")
    assert offer_shortcut(menu, (score("operator", 5.0, 5),)) is None


def test_never_without_shortcut_prompt() -> None:
    menu = with_option(sample_menu(), "billing", shortcut_prompt=None)
    offer, reason = evaluate_shortcut(menu, (score("billing", 5.0, 5, open_case=True),))
    assert offer is None
    assert reason == "no shortcut for billing: no shortcut prompt configured"


def test_intent_not_on_menu() -> None:
    offer, reason = evaluate_shortcut(sample_menu(), (score("lottery", 5.0, 5),))
    assert offer is None and reason == "no shortcut for lottery: not an option of this menu"


def test_only_the_top_intent_is_considered() -> None:
    # the second intent would qualify, but the top one does not
    ranking = (score("cancel", 5.0, 1), score("billing", 1.0, 9))
    assert offer_shortcut(sample_menu(), ranking) is None


@pytest.mark.parametrize(("yes", "no"), [("1", "2"), ("9", "#")])
def test_digits_from_policy(yes: str, no: str) -> None:
    menu = sample_menu(shortcut=ShortcutPolicy(yes_digit=yes, no_digit=no))
    offer = offer_shortcut(menu, (score("billing", 5.0, 5),))
    assert offer is not None and (offer.yes_digit, offer.no_digit) == (yes, no)


@pytest.mark.parametrize("channel", ["chat", "email", "sms", "messenger"])
def test_open_case_from_another_channel_is_a_continue_offer(channel: str) -> None:
    ranking = ranked(
        ev(2, "moving", channel=channel, event_type="message.inbound", case_id="C9"),
        *(ev(1, "billing") for _ in range(4)),
    )
    offer, reason = evaluate_shortcut(sample_menu(), ranking)
    assert offer is not None and offer.intent == "moving"
    assert offer.continue_case == "C9"
    assert reason == f"continue offered for moving: open case C9 last active by {channel}"


def test_open_case_last_active_by_voice_is_a_plain_shortcut() -> None:
    ranking = ranked(ev(2, "moving", channel="voice", case_id="C9"))
    offer = offer_shortcut(sample_menu(), ranking)
    assert offer is not None and offer.continue_case is None


def test_closed_case_is_no_continue_offer() -> None:
    ranking = ranked(
        ev(3, "moving", channel="chat", event_type="message.inbound", case_id="C9"),
        ev(2, None, channel="chat", event_type="case.closed", case_id="C9"),
    )
    offer = offer_shortcut(sample_menu(), ranking)
    assert offer is None or offer.continue_case is None
