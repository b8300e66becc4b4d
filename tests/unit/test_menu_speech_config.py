"""A menu's ``speech:`` block and its options' ``phrases:``: validated at start-up, with
errors that name the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import SpeechPolicy
from ivr_engine.menu_config import parse_menu, prompt_keys
from ivr_engine.speech_wiring import speech_grammars

MENU = """
menu: test
{speech}
options:
  - intent: billing
    digit: "1"
    label: Billing
    prompt: ivr-engine/label-billing
    phrases: {billing}
  - intent: operator
    digit: "0"
    label: Operator
    prompt: ivr-engine/label-operator
    phrases: {operator}
"""
PATH = Path("menus/test.yaml")


def menu_text(
    speech: str = "", billing: str = "[my bill, payment]", operator: str = "[an agent]"
) -> str:
    return MENU.format(speech=speech, billing=billing, operator=operator)


def test_speech_is_off_unless_enabled_and_phrases_reach_the_options() -> None:
    menu = parse_menu(PATH, menu_text())
    assert menu.speech == SpeechPolicy()
    assert not menu.speech.enabled
    assert menu.options[0].phrases == ("my bill", "payment")
    assert speech_grammars({"test": menu}) == {}  # nothing to load for a DTMF-only menu
    assert "ivr-engine/say-or-press" not in prompt_keys(menu)


def test_an_enabled_speech_menu_has_its_grammar_and_its_prompt_checked() -> None:
    speech = "speech: {enabled: true, key_wait_ms: 500, listen_ms: 4000, silence_s: 1}"
    menu = parse_menu(PATH, menu_text(speech))
    assert menu.speech == SpeechPolicy(enabled=True, key_wait_ms=500, listen_ms=4000, silence_s=1)
    assert speech_grammars({"test": menu}) == {
        "test": {"billing": ("my bill", "payment"), "operator": ("an agent",)}
    }
    assert prompt_keys(menu)["ivr-engine/say-or-press"] == ["speech.prompt"]


def test_one_phrase_for_two_options_is_refused() -> None:
    with pytest.raises(ConfigError) as error:
        parse_menu(PATH, menu_text(operator="[payment]"))
    assert str(error.value) == (
        "menus/test.yaml: options[1].phrases: 'payment' is also a phrase of options[0]"
    )


def test_speech_enabled_with_nothing_to_say_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"speech\.enabled: no option has phrases"):
        parse_menu(PATH, menu_text("speech: {enabled: true}", billing="[]", operator="[]"))


@pytest.mark.parametrize(
    "phrases", ['["My Bill"]', '["pay, bill"]', '["bill!"]', '[""]', '["a b c d e f g"]']
)
def test_a_phrase_is_lower_case_words(phrases: str) -> None:
    with pytest.raises(ConfigError, match=r"options\.0\.phrases\.0|options\[0\]\.phrases"):
        parse_menu(PATH, menu_text(billing=phrases))


@pytest.mark.parametrize(
    ("speech", "key"),
    [
        ("speech: {enabled: true, listen_ms: 500}", "listen_ms"),
        ("speech: {enabled: true, silence_s: 0}", "silence_s"),
        ("speech: {enabled: true, key_wait_ms: 50}", "key_wait_ms"),
        ("speech: {enabled: true, prompt: 'a b'}", "prompt"),
        ("speech: {enabeld: true}", "enabeld"),
    ],
)
def test_speech_settings_out_of_range_name_their_key(speech: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"speech\.{key}"):
        parse_menu(PATH, menu_text(speech))
