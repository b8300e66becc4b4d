"""Reorder a menu by a ranking. Pure; the result is always a permutation of the menu.

Pinned options (operator on 0) keep their digit and are announced last, in default order.
POSITIONAL: the unpinned options, ranked ones first, take the unpinned default digits in
ascending key order ("1" < ... < "9" < "0" < "*" < "#"): the best option becomes key 1.
STABLE: every option keeps its default digit; only the announcement order changes.
An intent moves up only with an open case or ``ranking.min_contacts`` contacts in the window.
A ranking that moves nothing (empty, only pinned intents, or too few contacts) gives the
default menu exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

from ivr_engine.domain.models import DigitPolicy, IntentScore, Menu, MenuOption, PresentedOption

KEY_ORDER = "1234567890*#"


def default_entries(menu: Menu) -> tuple[PresentedOption, ...]:
    """The menu as configured: default order, default digits."""
    return tuple(PresentedOption(option.digit, option) for option in menu.options)


def ranked_intents(ranking: Sequence[IntentScore], min_contacts: int = 1) -> tuple[str, ...]:
    """Intents that move up, in ranking order, once each: an open case, or a positive score
    from at least ``min_contacts`` contacts (one call about billing does not move billing's
    key for a caller who knows the menu by heart)."""
    moving = (s.intent for s in ranking if s.open_case or moves_up(s, min_contacts))
    return tuple(dict.fromkeys(moving))


def moves_up(score: IntentScore, min_contacts: int) -> bool:
    """Enough contacts for this intent to move up by its score alone."""
    return score.score > 0 and score.contacts >= min_contacts


def reorder_menu(menu: Menu, ranking: Sequence[IntentScore]) -> tuple[PresentedOption, ...]:
    """Entries in announcement order, with the digit each option answers to."""
    unpinned = [option for option in menu.options if not option.pinned]
    order = _unpinned_order(unpinned, ranked_intents(ranking, menu.ranking.min_contacts))
    if order == unpinned:
        return default_entries(menu)
    if menu.digit_policy is DigitPolicy.POSITIONAL:
        digits = sorted((option.digit for option in unpinned), key=key_rank)
        moved = [PresentedOption(d, o) for d, o in zip(digits, order, strict=True)]
    else:
        moved = [PresentedOption(option.digit, option) for option in order]
    pinned = [PresentedOption(option.digit, option) for option in menu.options if option.pinned]
    return (*moved, *pinned)


def key_rank(digit: str) -> tuple[int, str]:
    """Sort key for phone keys: 1..9, then 0, *, # (anything else after, by text)."""
    index = KEY_ORDER.find(digit) if len(digit) == 1 else -1
    return (index if index >= 0 else len(KEY_ORDER), digit)


def _unpinned_order(unpinned: list[MenuOption], ranked: Sequence[str]) -> list[MenuOption]:
    by_intent = {option.intent: option for option in unpinned}
    first = [by_intent[intent] for intent in ranked if intent in by_intent]
    rest = [option for option in unpinned if option.intent not in ranked]
    return first + rest
