"""The personalisation core: pure functions from history + menu to an explainable decision.

No I/O and no clock reads: ``now`` is always a parameter.
"""

from ivr_engine.personalize.announce import (
    digit_prompt,
    interpret_menu_choice,
    interpret_shortcut,
    menu_prompt_sequence,
    pinned_choice,
    shortcut_prompt_sequence,
)
from ivr_engine.personalize.cases import CASE_CLOSED
from ivr_engine.personalize.decide import (
    NEW_CALLER,
    NO_RECENT_CONTACTS,
    decide_menu,
    static_menu,
)
from ivr_engine.personalize.prefill import plan_fields
from ivr_engine.personalize.ranking import FUTURE_SKEW, rank_intents
from ivr_engine.personalize.reorder import default_entries, reorder_menu
from ivr_engine.personalize.shortcut import evaluate_shortcut, offer_shortcut
from ivr_engine.personalize.verification import KnowledgeCheck, check_known_answer

__all__ = [
    "CASE_CLOSED",
    "FUTURE_SKEW",
    "NEW_CALLER",
    "NO_RECENT_CONTACTS",
    "KnowledgeCheck",
    "check_known_answer",
    "decide_menu",
    "default_entries",
    "digit_prompt",
    "evaluate_shortcut",
    "interpret_menu_choice",
    "interpret_shortcut",
    "menu_prompt_sequence",
    "offer_shortcut",
    "pinned_choice",
    "plan_fields",
    "rank_intents",
    "reorder_menu",
    "shortcut_prompt_sequence",
    "static_menu",
]
