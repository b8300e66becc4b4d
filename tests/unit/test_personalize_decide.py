"""decide_menu / static_menu: composition and reasons."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_personalize_helpers import NOW, ev, five_of_six_billing, history, sample_menu

from ivr_engine.domain.models import DigitPolicy, RankingPolicy, ShortcutPolicy
from ivr_engine.personalize import (
    NEW_CALLER,
    NO_RECENT_CONTACTS,
    decide_menu,
    default_entries,
    static_menu,
)


def test_new_caller_gets_default_menu() -> None:
    menu = sample_menu()
    decision = decide_menu(menu, None, NOW)
    assert decision == static_menu(menu, NEW_CALLER)
    assert decision.personalised is False
    assert decision.entries == default_entries(menu)
    assert decision.reasons == ("new caller: default order",)
    assert decision.ranking == () and decision.shortcut is None


def test_known_customer_without_contacts() -> None:
    menu = sample_menu()
    decision = decide_menu(menu, history(), NOW)
    assert decision.personalised is True
    assert decision.entries == default_entries(menu)
    assert decision.reasons == (NO_RECENT_CONTACTS,) == ("no recent contacts: default order",)
    assert decision.shortcut is None


def test_only_stale_contacts_give_default_order() -> None:
    decision = decide_menu(sample_menu(), history(ev(400, "billing")), NOW)
    assert decision.entries == default_entries(sample_menu())
    assert decision.reasons == (NO_RECENT_CONTACTS,)


def test_static_menu() -> None:
    menu = sample_menu(DigitPolicy.STABLE)
    decision = static_menu(menu, "timeline unavailable: down")
    assert decision.menu_name == "main"
    assert decision.personalised is False
    assert decision.entries == default_entries(menu)
    assert (decision.ranking, decision.shortcut) == ((), None)
    assert decision.reasons == ("timeline unavailable: down",)


def test_returning_billing_caller_positional() -> None:
    decision = decide_menu(sample_menu(), history(*five_of_six_billing()), NOW)
    assert decision.personalised
    assert decision.intent_for_digit("1") == "billing"
    assert decision.entries[0].option.intent == "billing"
    assert decision.entries[-1].digit == "0"
    assert decision.shortcut is not None and decision.shortcut.intent == "billing"
    share = decision.ranking[0].score / sum(s.score for s in decision.ranking)
    assert decision.reasons == (
        "billing: 5 of last 6 contacts, latest 2 days ago",
        "tech_support: 1 of last 6 contacts, latest 15 days ago",
        "tech_support: fewer than 2 contacts, not moved up",
        "billing on key 1 (default key 6)",
        f"shortcut offered for billing: 5 contacts (min 3), {share:.0%} of the weighted score "
        "(min 60%)",
    )
    assert decision.reasons[-1] == decision.shortcut.reason


def test_returning_billing_caller_stable() -> None:
    menu = sample_menu(DigitPolicy.STABLE)
    decision = decide_menu(menu, history(*five_of_six_billing()), NOW)
    assert decision.entries[0].option.intent == "billing"
    assert decision.entries[0].digit == "6"
    assert decision.intent_for_digit("6") == "billing"
    assert "billing announced first, key 6 kept" in decision.reasons


def test_top_already_first_has_no_order_reason_when_unchanged() -> None:
    decision = decide_menu(sample_menu(), history(ev(1, "new_service")), NOW)
    assert decision.entries == default_entries(sample_menu())
    assert decision.reasons == (
        "new_service: 1 of last 1 contact, latest 1 day ago",
        "new_service: fewer than 2 contacts, not moved up",
        "no shortcut for new_service: 1 contact (min 3), 100% of the weighted score (min 60%)",
    )


def test_positional_top_on_its_own_key_is_announced_first() -> None:
    events = (ev(1, "new_service"), ev(2, "outage"), ev(3, "new_service"), ev(4, "outage"))
    decision = decide_menu(sample_menu(), history(*events), NOW)
    assert decision.entries[1].option.intent == "outage"
    assert "new_service announced first, key 1 kept" in decision.reasons


def test_one_contact_keeps_the_default_menu_and_says_why() -> None:
    """One call about billing: billing stays on 6 for a caller who knows the menu."""
    decision = decide_menu(sample_menu(), history(ev(1, "billing")), NOW)
    assert decision.entries == default_entries(sample_menu())
    assert decision.intent_for_digit("6") == "billing"
    assert "billing: fewer than 2 contacts, not moved up" in decision.reasons
    two = decide_menu(sample_menu(), history(ev(1, "billing"), ev(5, "billing")), NOW)
    assert two.intent_for_digit("1") == "billing"
    assert not any("not moved up" in r for r in two.reasons)


def test_shortcut_refusal_is_explained() -> None:
    decision = decide_menu(sample_menu(), history(ev(1, "billing")), NOW)
    assert decision.shortcut is None
    assert decision.reasons[-1].startswith("no shortcut for billing: 1 contact (min 3)")


def test_shortcut_disabled_no_shortcut_reason() -> None:
    menu = sample_menu(shortcut=ShortcutPolicy(enabled=False))
    decision = decide_menu(menu, history(*five_of_six_billing()), NOW)
    assert decision.shortcut is None
    assert not any("shortcut" in r for r in decision.reasons)


def test_open_case_decision() -> None:
    events = (*five_of_six_billing(), ev(3, "outage", event_type="case.opened", case_id="C42"))
    decision = decide_menu(sample_menu(), history(*events), NOW)
    assert decision.intent_for_digit("1") == "outage"
    assert decision.reasons[0] == "outage: open case C42, last activity by voice 3 days ago"
    assert decision.shortcut is not None and decision.shortcut.intent == "outage"


def test_ranking_uses_menu_policy() -> None:
    menu = sample_menu(ranking=RankingPolicy(max_age_days=1))
    decision = decide_menu(menu, history(*five_of_six_billing()), NOW)
    assert decision.entries == default_entries(menu)


def test_ranking_only_menu_intents() -> None:
    decision = decide_menu(sample_menu(), history(ev(1, "lottery"), ev(2, "moving")), NOW)
    assert [s.intent for s in decision.ranking] == ["moving"]


@pytest.mark.parametrize("policy", list(DigitPolicy))
def test_deterministic(policy: DigitPolicy) -> None:
    menu = sample_menu(policy)
    h = history(*five_of_six_billing())
    assert decide_menu(menu, h, NOW) == decide_menu(menu, h, NOW)


def test_later_now_changes_only_ages() -> None:
    h = history(*five_of_six_billing())
    later = decide_menu(sample_menu(), h, NOW + timedelta(days=1))
    assert later.reasons[0] == "billing: 5 of last 6 contacts, latest 3 days ago"
