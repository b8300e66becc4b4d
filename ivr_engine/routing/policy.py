"""Best-skilled agent routing. Pure: ``now`` is a parameter, nothing here reads a clock.

A decision for a caller who has waited ``waited`` seconds (``now - waiting_since``):

1. The intent's rule; no rule: ``Overflow(fallback_target, UNKNOWN_INTENT)`` (fail closed).
2. The stage: the last relaxation stage with ``after_s <= waited`` (0: the rule as
   configured). It caps the required levels and may accept any language.
3. Eligible agents, scanning only the pool of the rarest required skill: state
   ``available``, fewer interactions than ``max_concurrent``, not in ``exclude``, every
   required skill at the stage's level, speaking the caller's language unless the stage
   relaxes it. An ineligible agent is counted once, at the first check it fails.
4. Ranking, best first: speaks the language; last-agent affinity (helped within
   ``window_days`` and the caller has waited less than ``max_wait_s``); total proficiency
   over the required skills; longest idle (earliest ``state_since``, a future one counts as
   ``now``); agent id. Plain lexicographic order, so the deciding factor can be named.
5. Nobody eligible: ``Overflow`` to the overflow stage reached, with ``retry_after_s`` until
   the next relaxation stage that accepts more agents (``None`` when no stage would, or no
   agent has a required skill: relaxing levels cannot create a skill).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ivr_engine.routing import explain
from ivr_engine.routing.models import (
    AffinityPolicy,
    Agent,
    AgentChosen,
    AgentSnapshot,
    AgentState,
    Candidate,
    IntentRule,
    Overflow,
    OverflowReason,
    RoutingConfig,
    RoutingDecision,
    RoutingRequest,
    ScoreParts,
    require_aware,
)
from ivr_engine.routing.roster import Roster
from ivr_engine.routing.stages import StageNeed, next_relaxation, overflow_stage, stage_need

_DAY = 86400.0
_AVAILABLE = AgentState.AVAILABLE

# (not speaks, not affinity, -proficiency, state_since clamped to now, agent_id, agent, state)
# ascending order is best first; agent ids are unique, so comparison never reaches the agent
_Entry = tuple[bool, bool, int, datetime, str, Agent, AgentSnapshot]


@dataclass(slots=True)
class _Counts:
    not_available: int = 0
    at_capacity: int = 0
    tried: int = 0
    below_level: int = 0
    no_language: int = 0

    def parts(self) -> tuple[tuple[int, str], ...]:
        return (
            (self.not_available, "not available"),
            (self.at_capacity, "at max concurrency"),
            (self.tried, "already tried"),
            (self.below_level, "below the level"),
            (self.no_language, "without the language"),
        )


def route_call(
    request: RoutingRequest,
    roster: Roster,
    states: Mapping[str, AgentSnapshot],
    config: RoutingConfig,
    now: datetime,
) -> RoutingDecision:
    """Choose the best agent for this caller now, or the overflow target, with reasons."""
    require_aware(now, "now")
    rule = config.intents.get(request.intent)
    if rule is None:
        reasons = explain.unknown_intent(request.intent, config.fallback_target)
        return Overflow(
            request.intent, config.fallback_target, OverflowReason.UNKNOWN_INTENT, 0, reasons
        )
    since_s = (now - request.waiting_since).total_seconds()  # < 0: clock skew
    waited = max(since_s, 0.0)
    need = stage_need(rule, roster, request.language, waited)
    affinity_id, affinity_note = _affinity(request, config.affinity, now, waited)
    counts = _Counts()
    entries = _eligible(need, roster, states, request.exclude, affinity_id, now, counts)
    if not entries:
        return _overflow(request.intent, rule, roster, need, counts, since_s)
    top = heapq.nsmallest(max(config.max_candidates, 2), entries)
    if affinity_id is not None and top[0][4] != affinity_id:
        affinity_note = explain.affinity_missed(
            affinity_id, passed_over(affinity_id, roster, states, need, request.exclude)
        )
    return _chosen(request, need, top, len(entries), config, affinity_note, waited, now)


def _affinity(
    request: RoutingRequest, policy: AffinityPolicy, now: datetime, waited_s: float
) -> tuple[str | None, str | None]:
    """(the agent id that gets the affinity bonus or None, the affinity reason or None)."""
    last = request.last_agent
    if last is None:
        return None, None
    age_s = max((now - last.helped_at).total_seconds(), 0.0)
    if age_s > policy.window_days * _DAY:
        return None, explain.affinity_expired(age_s, policy.window_days)
    if waited_s >= policy.max_wait_s:
        return None, explain.affinity_wait_over(waited_s, policy.max_wait_s)
    return last.agent_id, explain.affinity(age_s)


def _eligible(
    need: StageNeed,
    roster: Roster,
    states: Mapping[str, AgentSnapshot],
    exclude: frozenset[str],
    affinity_id: str | None,
    now: datetime,
    counts: _Counts,
) -> list[_Entry]:
    """The hot loop (one pass over one skill pool): kept flat and inline on purpose."""
    entries: list[_Entry] = []
    pool_min = next(minimum for skill, minimum in need.levels if skill == need.pool_skill)
    others = tuple(level for level in need.levels if level[0] != need.pool_skill)
    code, strict = need.language, need.strict_language
    for agent, total in roster.pool(need.pool_skill):
        agent_id = agent.agent_id
        state = states.get(agent_id)
        if state is None or state.state is not _AVAILABLE:
            counts.not_available += 1
        elif state.interactions >= agent.max_concurrent:
            counts.at_capacity += 1
        elif agent_id in exclude:
            counts.tried += 1
        elif total < pool_min or (others and not _has_levels(agent, others)):
            counts.below_level += 1
        else:
            speaks = code is None or code in agent.languages
            if not speaks and strict:
                counts.no_language += 1
                continue
            for skill, _ in others:
                total += agent.skills[skill]
            since = state.state_since if state.state_since < now else now
            entries.append(
                (not speaks, agent_id != affinity_id, -total, since, agent_id, agent, state)
            )
    return entries


def _has_levels(agent: Agent, levels: tuple[tuple[str, int], ...]) -> bool:
    skills = agent.skills
    return all(skills.get(skill, 0) >= minimum for skill, minimum in levels)


def passed_over(
    agent_id: str,
    roster: Roster,
    states: Mapping[str, AgentSnapshot],
    need: StageNeed,
    exclude: frozenset[str],
) -> str:
    """Why this agent is not the choice: the first check it fails, in the scan's order."""
    agent = roster.by_id.get(agent_id)
    state = states.get(agent_id)
    if agent is None:
        return "not on the roster"
    if state is None or state.state is not _AVAILABLE:
        return f"{state.state if state else 'no live state'}"
    if state.interactions >= agent.max_concurrent:
        return f"at max concurrency ({state.interactions} of {agent.max_concurrent})"
    if agent_id in exclude:
        return "already tried for this call"
    for skill, minimum in need.levels:
        level = agent.skills.get(skill, 0)
        if level < minimum:
            return f"{skill} proficiency {level} < {minimum}" if level else f"no {skill} skill"
    if need.language is not None and need.language not in agent.languages:
        return f"does not speak {need.language}"
    return "ranked below the choice"


def _candidate(entry: _Entry, need: StageNeed, now: datetime) -> Candidate:
    not_speaks, not_affinity, minus_total, since, agent_id, agent, _ = entry
    score = ScoreParts(
        speaks_language=not not_speaks,
        affinity=not not_affinity,
        proficiency=-minus_total,
        idle_s=(now - since).total_seconds(),
        skills=tuple((skill, agent.skills[skill]) for skill, _ in need.levels),
    )
    return Candidate(agent_id, agent.name, agent.endpoint, agent.team, score)


def _deciding_factor(top: list[_Entry]) -> int | None:
    if len(top) < 2:
        return None
    return next(i for i in range(len(explain.FACTORS)) if top[0][i] != top[1][i])


def _chosen(
    request: RoutingRequest,
    need: StageNeed,
    top: list[_Entry],
    eligible: int,
    config: RoutingConfig,
    affinity_note: str | None,
    waited_s: float,
    now: datetime,
) -> AgentChosen:
    candidates = tuple(_candidate(entry, need, now) for entry in top[: config.max_candidates])
    best = candidates[0]
    factor = _deciding_factor(top)
    reasons = [explain.stage(need.stage, need.rule, waited_s)] if need.stage else []
    reasons += [
        explain.skill(skill, level, minimum)
        for (skill, level), (_, minimum) in zip(best.score.skills, need.levels, strict=True)
    ]
    if need.language is not None:
        reasons.append(explain.language(need.language, best.score.speaks_language))
    if affinity_note is not None:
        reasons.append(affinity_note)
    reasons.append(explain.idle(best.score.idle_s, factor == explain.IDLE_FACTOR))
    reasons.append(explain.ranking(eligible, factor))
    return AgentChosen(
        intent=request.intent,
        agent_id=best.agent_id,
        endpoint=best.endpoint,
        score=best.score,
        stage=need.stage,
        reasons=tuple(reasons),
        candidates=candidates,
        eligible=eligible,
    )


def _overflow(
    intent: str,
    rule: IntentRule,
    roster: Roster,
    need: StageNeed,
    counts: _Counts,
    since_s: float,
) -> Overflow:
    """``since_s``: seconds since the caller started waiting, negative under clock skew."""
    waited_s = max(since_s, 0.0)
    target = overflow_stage(rule.overflow, waited_s)
    size = len(roster.pool(need.pool_skill))
    reasons = [explain.stage(need.stage, need.rule, waited_s)] if need.stage else []
    retry: float | None = None
    if size == 0:
        reason = OverflowReason.NO_SKILLED_AGENT
        reasons.append(explain.no_skilled(need.pool_skill))
    else:
        reason = OverflowReason.NO_AGENT_FITS
        needs = explain.requirement(need.levels, need.language, need.strict_language)
        reasons += [explain.no_fit(needs), explain.pool(need.pool_skill, size, counts.parts())]
        later = next_relaxation(rule, need)
        if later is not None:
            retry = later[1].after_s - since_s  # the stage starts at waiting_since + after_s
            reasons.append(explain.next_stage(retry, later[0]))
    reasons.append(explain.overflow(target.target, target.after_s))
    return Overflow(intent, target.target, reason, need.stage, tuple(reasons), retry)
