"""Which relaxation stage and which overflow target apply after a caller has waited N s.

Pure. Stages are sorted by ``after_s``; a later stage only ever relaxes (the configuration
loader checks it), so the stage reached after waiting longer never accepts fewer agents.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr_engine.routing.models import (
    BASE_STAGE,
    IntentRule,
    OverflowStage,
    RelaxationStage,
    language_key,
)
from ivr_engine.routing.roster import Roster


@dataclass(frozen=True, slots=True)
class StageNeed:
    """What the current stage asks of an agent."""

    stage: int
    rule: RelaxationStage
    levels: tuple[tuple[str, int], ...]  # (skill, minimum) in the rule's order
    pool_skill: str  # the required skill with the fewest agents: the only pool scanned
    language: str | None  # normalised caller language
    strict_language: bool


def stage_need(
    rule: IntentRule, roster: Roster, language: str | None, waited_s: float
) -> StageNeed:
    """The relaxation stage reached after ``waited_s`` seconds and the levels it asks."""
    index, stage = 0, BASE_STAGE
    for position, candidate in enumerate(rule.relaxation, start=1):
        if candidate.after_s <= waited_s:
            index, stage = position, candidate
    cap = stage.min_proficiency
    levels = tuple(
        (r.skill, r.min_proficiency if cap is None else min(r.min_proficiency, cap))
        for r in rule.skills
    )
    pool_skill = min((len(roster.pool(skill)), skill) for skill, _ in levels)[1]
    code = language_key(language) if language else None
    return StageNeed(index, stage, levels, pool_skill, code or None, not stage.any_language)


def next_relaxation(rule: IntentRule, need: StageNeed) -> tuple[int, RelaxationStage] | None:
    """The next stage that would accept more agents than ``need`` does, or None."""
    for index in range(need.stage + 1, len(rule.relaxation) + 1):
        stage = rule.relaxation[index - 1]
        cap = stage.min_proficiency
        lowers = cap is not None and any(minimum > cap for _, minimum in need.levels)
        if lowers or (stage.any_language and need.strict_language and need.language):
            return index, stage
    return None


def overflow_stage(stages: tuple[OverflowStage, ...], waited_s: float) -> OverflowStage:
    """The last overflow stage started after ``waited_s`` seconds (the first one at least)."""
    reached = stages[0]
    for stage in stages[1:]:
        if stage.after_s <= waited_s:
            reached = stage
    return reached
