"""The "calling about your bill again?" shortcut: offer the top intent first. Pure.

Offered only when the menu enables shortcuts and the top intent's option exists, is not
pinned and has a ``shortcut_prompt``; and either the top intent has an open case, or it has
at least ``min_contacts`` contacts and at least ``min_share`` of the total ranked score.
An open case last active on another channel (chat, e-mail, ...) makes it a "continue where
you left off" offer carrying the case id.
"""

from __future__ import annotations

from collections.abc import Sequence

from ivr_engine.domain.models import (
    IntentScore,
    Menu,
    MenuOption,
    ShortcutOffer,
    ShortcutPolicy,
)

_SHARE_TOLERANCE = 1e-9  # an exact min_share must not fail on float rounding


def offer_shortcut(menu: Menu, ranking: Sequence[IntentScore]) -> ShortcutOffer | None:
    """The offer for the top intent, or None."""
    return evaluate_shortcut(menu, ranking)[0]


def evaluate_shortcut(
    menu: Menu, ranking: Sequence[IntentScore]
) -> tuple[ShortcutOffer | None, str | None]:
    """The offer (or None) and why; the reason is None when there is nothing to explain
    (shortcuts disabled, or no ranked intent)."""
    policy = menu.shortcut
    top = ranking[0] if ranking else None
    if not policy.enabled or top is None or not (top.score > 0 or top.open_case):
        return None, None
    option = menu.option(top.intent)
    refusal = _option_refusal(option)
    if refusal is not None:
        return None, f"no shortcut for {top.intent}: {refusal}"
    assert option is not None and option.shortcut_prompt is not None
    offered, grounds = _grounds(top, ranking, policy)
    if not offered:
        return None, f"no shortcut for {top.intent}: {grounds}"
    continue_case = top.case_id if top.open_case and top.case_channel != "voice" else None
    if continue_case is not None:
        reason = (
            f"continue offered for {top.intent}: open case {continue_case} "
            f"last active by {top.case_channel}"
        )
    else:
        reason = f"shortcut offered for {top.intent}: {grounds}"
    offer = ShortcutOffer(
        top.intent,
        option.shortcut_prompt,
        policy.yes_digit,
        policy.no_digit,
        reason,
        continue_case=continue_case,
    )
    return offer, reason


def score_share(top: IntentScore, ranking: Sequence[IntentScore]) -> float:
    """The top intent's share of the total score of all ranked intents (0 if none)."""
    total = sum(s.score for s in ranking)
    return top.score / total if total > 0 else 0.0


def _option_refusal(option: MenuOption | None) -> str | None:
    if option is None:
        return "not an option of this menu"
    if option.pinned:
        return "pinned option"
    if not option.shortcut_prompt:
        return "no shortcut prompt configured"
    return None


def _grounds(
    top: IntentScore, ranking: Sequence[IntentScore], policy: ShortcutPolicy
) -> tuple[bool, str]:
    if top.open_case:
        return True, "open case"
    share = score_share(top, ranking)
    enough = top.contacts >= policy.min_contacts
    dominant = share >= policy.min_share - _SHARE_TOLERANCE
    text = (
        f"{top.contacts} {'contact' if top.contacts == 1 else 'contacts'} "
        f"(min {policy.min_contacts}), "
        f"{share:.0%} of the weighted score (min {policy.min_share:.0%})"
    )
    return enough and dominant, text
