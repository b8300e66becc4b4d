"""Prompt sequencing and key interpretation, so any order can be spoken. Pure.

A menu is spoken as "[welcome] for <label> press <digit>, for <label> press <digit>, ...";
a shortcut as "[welcome] are you calling about <topic> again? ...".
"""

from __future__ import annotations

from ivr_engine.domain.models import MenuDecision, MenuPrompts, ShortcutOffer

_DIGIT_WORDS = {"*": "star", "#": "pound"}


def digit_prompt(prompts: MenuPrompts, digit: str) -> str:
    """The prompt id that speaks one key: ``digits/6``, ``digits/star``, ``digits/pound``."""
    return prompts.digit_prefix + _DIGIT_WORDS.get(digit, digit)


def menu_prompt_sequence(
    decision: MenuDecision, prompts: MenuPrompts, *, greeting: bool
) -> tuple[str, ...]:
    """Prompt ids for the whole menu, in the decision's announcement order."""
    sequence: list[str] = [prompts.welcome] if greeting else []
    for entry in decision.entries:
        sequence += [
            prompts.for_word,
            entry.option.prompt,
            prompts.press_word,
            digit_prompt(prompts, entry.digit),
        ]
    return tuple(sequence)


def shortcut_prompt_sequence(
    offer: ShortcutOffer, prompts: MenuPrompts, *, greeting: bool
) -> tuple[str, ...]:
    """Prompt ids for the shortcut question."""
    if offer.continue_case is not None:
        question = (prompts.continue_intro, offer.prompt, prompts.continue_question)
    else:
        question = (prompts.shortcut_intro, offer.prompt, prompts.shortcut_again)
    return (prompts.welcome, *question) if greeting else question


def interpret_menu_choice(decision: MenuDecision, digits: str) -> str | None:
    """The intent for the first key pressed; None when nothing or an unused key was pressed."""
    return decision.intent_for_digit(digits[0]) if digits else None


def interpret_shortcut(offer: ShortcutOffer, digits: str) -> bool | None:
    """True for the yes key, False for the no key, None for anything else or no input."""
    first = digits[:1]
    if first and first == offer.yes_digit:
        return True
    if first and first == offer.no_digit:
        return False
    return None


def pinned_choice(decision: MenuDecision, digits: str) -> str | None:
    """The intent of a pinned option (e.g. operator on 0) whose key was pressed, else None.

    A pinned option keeps its key in every order, so callers learn it and press it at any
    question, the shortcut question included (whose own yes/no keys take precedence).
    """
    first = digits[:1]
    entry = next((e for e in decision.entries if e.digit == first and first), None)
    return entry.option.intent if entry is not None and entry.option.pinned else None
