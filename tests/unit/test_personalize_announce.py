"""Prompt sequencing and key interpretation."""

from __future__ import annotations

import dataclasses

import pytest
from test_personalize_helpers import NOW, five_of_six_billing, history, sample_menu

from ivr_engine.domain.models import (
    MenuDecision,
    MenuOption,
    MenuPrompts,
    PresentedOption,
    ShortcutOffer,
)
from ivr_engine.personalize import (
    decide_menu,
    digit_prompt,
    interpret_menu_choice,
    interpret_shortcut,
    menu_prompt_sequence,
    pinned_choice,
    shortcut_prompt_sequence,
    static_menu,
)

PROMPTS = MenuPrompts()
OFFER = ShortcutOffer("billing", "ivr-engine/shortcut-topic-billing", "1", "2", "why")


def test_default_menu_sequence_with_greeting() -> None:
    decision = static_menu(sample_menu(), "new caller: default order")
    sequence = menu_prompt_sequence(decision, PROMPTS, greeting=True)
    assert sequence[:5] == (
        "ivr-engine/welcome",
        "ivr-engine/for",
        "ivr-engine/label-new-service",
        "ivr-engine/press",
        "digits/1",
    )
    assert sequence[-4:] == (
        "ivr-engine/for",
        "ivr-engine/label-operator",
        "ivr-engine/press",
        "digits/0",
    )
    assert len(sequence) == 1 + 4 * 7


def test_personalised_sequence_without_greeting() -> None:
    decision = decide_menu(sample_menu(), history(*five_of_six_billing()), NOW)
    sequence = menu_prompt_sequence(decision, PROMPTS, greeting=False)
    assert sequence[:8] == (
        "ivr-engine/for",
        "ivr-engine/label-billing",
        "ivr-engine/press",
        "digits/1",
        "ivr-engine/for",
        "ivr-engine/label-new-service",  # tech_support's 1 contact does not move it up
        "ivr-engine/press",
        "digits/2",
    )


@pytest.mark.parametrize(("digit", "prompt"), [("*", "digits/star"), ("#", "digits/pound")])
def test_star_and_pound(digit: str, prompt: str) -> None:
    option = MenuOption("x", "X", "ivr-engine/label-x", digit)
    decision = MenuDecision("main", False, (PresentedOption(digit, option),), (), None, ("r",))
    assert menu_prompt_sequence(decision, PROMPTS, greeting=False)[-1] == prompt
    assert digit_prompt(PROMPTS, digit) == prompt


def test_custom_prompts_are_used() -> None:
    prompts = MenuPrompts(welcome="w", for_word="f", press_word="p", digit_prefix="d/")
    decision = static_menu(sample_menu(), "r")
    assert menu_prompt_sequence(decision, prompts, greeting=True)[:5] == (
        "w",
        "f",
        "ivr-engine/label-new-service",
        "p",
        "d/1",
    )


def test_shortcut_sequence() -> None:
    assert shortcut_prompt_sequence(OFFER, PROMPTS, greeting=True) == (
        "ivr-engine/welcome",
        "ivr-engine/shortcut-calling-about",
        "ivr-engine/shortcut-topic-billing",
        "ivr-engine/shortcut-again",
    )
    assert shortcut_prompt_sequence(OFFER, PROMPTS, greeting=False) == (
        "ivr-engine/shortcut-calling-about",
        "ivr-engine/shortcut-topic-billing",
        "ivr-engine/shortcut-again",
    )


def test_continue_sequence() -> None:
    offer = dataclasses.replace(OFFER, continue_case="C9")
    assert shortcut_prompt_sequence(offer, PROMPTS, greeting=True) == (
        "ivr-engine/welcome",
        "ivr-engine/continue-open-case",
        "ivr-engine/shortcut-topic-billing",
        "ivr-engine/continue-question",
    )


def test_interpret_menu_choice_personalised() -> None:
    decision = decide_menu(sample_menu(), history(*five_of_six_billing()), NOW)
    assert interpret_menu_choice(decision, "1") == "billing"
    assert interpret_menu_choice(decision, "6") == "cancel"
    assert interpret_menu_choice(decision, "0") == "operator"
    assert interpret_menu_choice(decision, "12") == "billing"  # first key counts


@pytest.mark.parametrize("digits", ["", "7", "9", "*", "#", "x"])
def test_interpret_menu_choice_invalid(digits: str) -> None:
    assert interpret_menu_choice(static_menu(sample_menu(), "r"), digits) is None


@pytest.mark.parametrize(
    ("digits", "expected"),
    [("1", True), ("2", False), ("", None), ("3", None), ("*", None), ("12", True), ("21", False)],
)
def test_interpret_shortcut(digits: str, expected: bool | None) -> None:
    assert interpret_shortcut(OFFER, digits) is expected


@pytest.mark.parametrize(
    ("digits", "expected"),
    [("0", "operator"), ("09", "operator"), ("1", None), ("6", None), ("", None), ("*", None)],
)
def test_pinned_choice_takes_only_a_pinned_options_key(digits: str, expected: str | None) -> None:
    decision = decide_menu(sample_menu(), history(*five_of_six_billing()), NOW)
    assert decision.intent_for_digit("1") is not None  # an unpinned option has key 1
    assert pinned_choice(decision, digits) == expected
