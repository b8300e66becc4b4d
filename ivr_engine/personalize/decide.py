"""Compose ranking, reordering and the shortcut into one explainable ``MenuDecision``. Pure."""

from __future__ import annotations

from datetime import datetime

from ivr_engine.domain.models import (
    CallerHistory,
    DigitPolicy,
    IntentScore,
    Menu,
    MenuDecision,
    PresentedOption,
)
from ivr_engine.personalize.ranking import rank_intents
from ivr_engine.personalize.reorder import default_entries, moves_up, reorder_menu
from ivr_engine.personalize.shortcut import evaluate_shortcut

NEW_CALLER = "new caller: default order"
NO_RECENT_CONTACTS = "no recent contacts: default order"


def static_menu(menu: Menu, reason: str) -> MenuDecision:
    """The default menu, not personalised (new caller, timeline slow or down, ambiguous ID)."""
    return MenuDecision(
        menu_name=menu.name,
        personalised=False,
        entries=default_entries(menu),
        ranking=(),
        shortcut=None,
        reasons=(reason,),
    )


def decide_menu(menu: Menu, history: CallerHistory | None, now: datetime) -> MenuDecision:
    """The menu this caller hears; every change carries a human-readable reason."""
    if history is None:
        return static_menu(menu, NEW_CALLER)
    intents = frozenset(option.intent for option in menu.options)
    ranking = rank_intents(history.events, now, menu.ranking, intents)
    entries = reorder_menu(menu, ranking)
    offer, shortcut_reason = evaluate_shortcut(menu, ranking)
    reasons = [score.reason for score in ranking] or [NO_RECENT_CONTACTS]
    held_back = _held_back_reason(menu, ranking)
    if held_back is not None:
        reasons.append(held_back)
    order_reason = _order_reason(menu, entries)
    if order_reason is not None:
        reasons.append(order_reason)
    if shortcut_reason is not None:
        reasons.append(shortcut_reason)
    return MenuDecision(menu.name, True, entries, ranking, offer, tuple(reasons))


def _held_back_reason(menu: Menu, ranking: tuple[IntentScore, ...]) -> str | None:
    """Which intents stayed in place for having too few contacts, e.g. 'billing: fewer
    than 2 contacts, not moved up'."""
    least = menu.ranking.min_contacts
    held = [s.intent for s in ranking if not s.open_case and not moves_up(s, least) and s.score > 0]
    if not held:
        return None
    noun = "contact" if least == 1 else "contacts"
    return f"{', '.join(held)}: fewer than {least} {noun}, not moved up"


def _order_reason(menu: Menu, entries: tuple[PresentedOption, ...]) -> str | None:
    """What moved for the first entry, e.g. 'billing on key 1 (default key 6)'."""
    if not entries or entries == default_entries(menu):
        return None
    first = entries[0]
    if menu.digit_policy is DigitPolicy.STABLE or first.digit == first.option.digit:
        return f"{first.option.intent} announced first, key {first.digit} kept"
    return f"{first.option.intent} on key {first.digit} (default key {first.option.digit})"
