"""Property tests: the routing policy against a brute-force oracle, and its invariants.

The oracle below restates the policy in the most direct way (every agent, every check, one
sort); the policy's skill index, single pass and partial sort must agree with it exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from test_routing_helpers import NOW

from ivr_engine.domain.errors import ConfigError
from ivr_engine.routing import (
    AffinityPolicy,
    Agent,
    AgentChosen,
    AgentSnapshot,
    AgentState,
    IntentRule,
    LastAgent,
    Overflow,
    OverflowReason,
    OverflowStage,
    RelaxationStage,
    RoutingConfig,
    RoutingDecision,
    RoutingRequest,
    SkillRequirement,
    build_roster,
    parse_routing_config,
    route_call,
)

SKILLS = ("billing", "sales", "general")
LANGUAGES = ("en", "es", "fr")
AGENT_IDS = tuple(f"a{n:02d}" for n in range(12))
EXAMPLES = settings(max_examples=100, deadline=None)
ORACLE_EXAMPLES = settings(max_examples=250, deadline=None)


@dataclass(frozen=True)
class Scenario:
    agents: list[Agent]
    states: dict[str, AgentSnapshot]
    config: RoutingConfig
    request: RoutingRequest

    def decide(self, now: datetime = NOW, **changes: Any) -> RoutingDecision:
        request = replace(self.request, **changes)
        return route_call(request, build_roster(self.agents), self.states, self.config, now)


# strategies are built once here: building them inside a composite on every draw is what
# made generation slow
_PROFILE = st.tuples(
    st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), max_size=3),
    st.frozensets(st.sampled_from(LANGUAGES), max_size=2),
    st.integers(1, 3),
)
_LIVE = st.one_of(
    st.none(),  # no live state: logged out long ago
    st.tuples(
        st.one_of(st.just(AgentState.AVAILABLE), st.sampled_from(list(AgentState))),
        st.integers(-2, 10).map(lambda minutes: minutes * 60),  # coarse: ties; some future
        st.integers(0, 3),
    ),
)
_ROSTER = st.lists(
    st.tuples(st.sampled_from(AGENT_IDS), _PROFILE, _LIVE),
    unique_by=lambda row: row[0],
    max_size=len(AGENT_IDS),
)


@st.composite
def roster_st(draw: st.DrawFn) -> tuple[list[Agent], dict[str, AgentSnapshot]]:
    agents, states = [], {}
    for agent_id, (skills, languages, max_concurrent), live in draw(_ROSTER):
        agents.append(
            Agent(
                agent_id,
                f"Agent {agent_id}",
                f"PJSIP/{agent_id}",
                skills,
                languages,
                "",
                max_concurrent,
            )
        )
        if live is not None:
            state, idle_s, interactions = live
            since = NOW - timedelta(seconds=idle_s)
            states[agent_id] = AgentSnapshot(agent_id, state, since, interactions)
    return agents, states


@st.composite
def relaxation_st(draw: st.DrawFn) -> tuple[RelaxationStage, ...]:
    """0-3 stages that start later and later and only ever relax."""
    times = sorted(draw(st.sets(st.integers(1, 300), max_size=3)))
    stages: list[RelaxationStage] = []
    cap: int | None = None
    any_language = False
    for after_s in times:
        drawn = draw(st.one_of(st.none(), st.integers(1, 5)))
        if drawn is not None:
            cap = drawn if cap is None else min(cap, drawn)
        any_language = any_language or draw(st.booleans())
        stages.append(RelaxationStage(float(after_s), cap, any_language))
    return tuple(stages)


@st.composite
def rule_st(draw: st.DrawFn) -> IntentRule:
    skills = draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 5), min_size=1))
    times = [0, *sorted(draw(st.sets(st.integers(1, 400), max_size=2)))]
    targets = st.sampled_from(("queue:billing", "queue:general", "callback"))
    return IntentRule(
        intent="billing",
        skills=tuple(SkillRequirement(skill, level) for skill, level in skills.items()),
        overflow=tuple(OverflowStage(float(t), draw(targets)) for t in times),
        relaxation=draw(relaxation_st()),
    )


@st.composite
def scenario_st(draw: st.DrawFn) -> Scenario:
    agents, states = draw(roster_st())
    config = RoutingConfig(
        intents={"billing": draw(rule_st())},
        affinity=AffinityPolicy(
            window_days=draw(st.sampled_from((0.0, 7.0, 30.0))),
            max_wait_s=draw(st.sampled_from((0.0, 30.0, 120.0, 600.0))),
        ),
        max_candidates=draw(st.integers(1, 6)),
    )
    known = [a.agent_id for a in agents]
    last = draw(
        st.one_of(
            st.none(),
            st.builds(
                LastAgent,
                st.sampled_from([*known, "ghost"]),
                st.integers(-1, 40).map(lambda days: NOW - timedelta(days=days)),
            ),
        )
    )
    request = RoutingRequest(
        intent=draw(st.sampled_from(("billing", "billing", "billing", "lottery"))),
        waiting_since=NOW - timedelta(seconds=draw(st.integers(-5, 40) | st.integers(-5, 400))),
        language=draw(st.sampled_from((None, "", "en", "ES", "es-MX", "fr", "de"))),
        last_agent=last,
        exclude=frozenset(draw(st.sets(st.sampled_from(AGENT_IDS), max_size=4))),
    )
    return Scenario(agents, states, config, request)


# --------------------------------------------------------------------------- the oracle


@dataclass(frozen=True)
class Expected:
    stage: int
    ranked: list[tuple[bool, bool, int, float, str]]  # ascending: best first
    levels: dict[str, int]


def oracle(scenario: Scenario, now: datetime = NOW) -> Expected:
    rule, request = scenario.config.intents["billing"], scenario.request
    waited = max((now - request.waiting_since).total_seconds(), 0.0)
    reached = [(i, s) for i, s in enumerate(rule.relaxation, 1) if s.after_s <= waited]
    stage, relax = reached[-1] if reached else (0, RelaxationStage(0.0))
    levels = {
        r.skill: r.min_proficiency
        if relax.min_proficiency is None
        else min(r.min_proficiency, relax.min_proficiency)
        for r in rule.skills
    }
    language = request.language.split("-")[0].split("_")[0].lower() if request.language else None
    ranked = []
    for agent in scenario.agents:
        state = scenario.states.get(agent.agent_id)
        if (
            state is None
            or state.state != AgentState.AVAILABLE
            or state.interactions >= agent.max_concurrent
            or agent.agent_id in request.exclude
            or any(agent.skills.get(skill, 0) < level for skill, level in levels.items())
        ):
            continue
        speaks = language is None or language in agent.languages
        if not speaks and not relax.any_language:
            continue
        idle = max((now - state.state_since).total_seconds(), 0.0)
        total = sum(agent.skills[skill] for skill in levels)
        key = (not speaks, agent.agent_id != _affinity_id(scenario, waited), -total, -idle)
        ranked.append((*key, agent.agent_id))
    return Expected(stage, sorted(ranked), levels)


def _affinity_id(scenario: Scenario, waited: float) -> str | None:
    last, policy = scenario.request.last_agent, scenario.config.affinity
    if last is None or waited >= policy.max_wait_s:
        return None
    age = max((NOW - last.helped_at).total_seconds(), 0.0)
    return last.agent_id if age <= policy.window_days * 86400 else None


# --------------------------------------------------------------------------- properties


@ORACLE_EXAMPLES
@given(scenario_st())
def test_policy_agrees_with_the_brute_force_oracle(scenario: Scenario) -> None:
    decision = scenario.decide()
    if scenario.request.intent == "lottery":
        assert isinstance(decision, Overflow)
        assert decision.reason is OverflowReason.UNKNOWN_INTENT
        assert decision.target == scenario.config.fallback_target
        return
    expected = oracle(scenario)
    assert decision.stage == expected.stage
    if not expected.ranked:
        assert isinstance(decision, Overflow)
        return
    assert isinstance(decision, AgentChosen)
    top = expected.ranked[: scenario.config.max_candidates]
    assert [c.agent_id for c in decision.candidates] == [key[-1] for key in top]
    assert decision.agent_id == top[0][-1] == decision.candidates[0].agent_id
    assert decision.eligible == len(expected.ranked)
    for candidate, key in zip(decision.candidates, top, strict=True):
        score = candidate.score
        assert (score.speaks_language, score.affinity) == (not key[0], not key[1])
        assert (score.proficiency, score.idle_s) == (-key[2], -key[3])
        assert [skill for skill, _ in score.skills] == list(expected.levels)


@EXAMPLES
@given(scenario_st())
def test_chosen_agent_meets_every_hard_constraint(scenario: Scenario) -> None:
    decision = scenario.decide()
    if not isinstance(decision, AgentChosen):
        return
    agent = next(a for a in scenario.agents if a.agent_id == decision.agent_id)
    state = scenario.states[decision.agent_id]
    assert state.state is AgentState.AVAILABLE
    assert state.interactions < agent.max_concurrent
    assert decision.agent_id not in scenario.request.exclude
    assert decision.endpoint == agent.endpoint
    for skill, level in oracle(scenario).levels.items():
        assert agent.skills.get(skill, 0) >= level


@EXAMPLES
@given(scenario_st())
def test_overflow_reason_and_target(scenario: Scenario) -> None:
    decision = scenario.decide()
    if not isinstance(decision, Overflow) or decision.reason is OverflowReason.UNKNOWN_INTENT:
        return
    rule = scenario.config.intents["billing"]
    waited = max((NOW - scenario.request.waiting_since).total_seconds(), 0.0)
    assert decision.target == [o for o in rule.overflow if o.after_s <= waited][-1].target
    unskilled = any(all(r.skill not in a.skills for a in scenario.agents) for r in rule.skills)
    assert (decision.reason is OverflowReason.NO_SKILLED_AGENT) == unskilled
    if decision.retry_after_s is not None:
        assert decision.retry_after_s > 0
        later = scenario.decide(now=NOW + timedelta(seconds=decision.retry_after_s))
        assert later.stage > decision.stage


@EXAMPLES
@given(scenario_st(), st.randoms(use_true_random=False))
def test_input_order_does_not_matter(scenario: Scenario, rng: random.Random) -> None:
    agents = list(scenario.agents)
    rng.shuffle(agents)
    states = dict(reversed(list(scenario.states.items())))
    shuffled = Scenario(agents, states, scenario.config, scenario.request)
    assert shuffled.decide() == scenario.decide()


@EXAMPLES
@given(scenario_st())
def test_ring_no_answer_reroute_goes_to_the_runner_up(scenario: Scenario) -> None:
    decision = scenario.decide()
    if not isinstance(decision, AgentChosen):
        return
    again = scenario.decide(exclude=scenario.request.exclude | {decision.agent_id})
    if decision.eligible == 1:
        assert isinstance(again, Overflow)
    elif len(decision.candidates) > 1:
        assert isinstance(again, AgentChosen)
        assert again.agent_id == decision.candidates[1].agent_id
        assert again.eligible == decision.eligible - 1


@EXAMPLES
@given(scenario_st(), st.integers(1, 400))
def test_waiting_longer_never_shrinks_the_pool(scenario: Scenario, more_s: int) -> None:
    decision = scenario.decide()
    later = scenario.decide(
        waiting_since=scenario.request.waiting_since - timedelta(seconds=more_s)
    )
    assert later.stage >= decision.stage
    if isinstance(decision, AgentChosen):
        assert isinstance(later, AgentChosen)
        assert later.eligible >= decision.eligible


@EXAMPLES
@given(scenario_st())
def test_reasons_are_readable(scenario: Scenario) -> None:
    decision = scenario.decide()
    assert decision.reasons
    assert all(isinstance(r, str) and r and r == r.strip() for r in decision.reasons)
    assert len(set(decision.reasons)) == len(decision.reasons)
    if isinstance(decision, AgentChosen):
        for skill, level in decision.score.skills:
            assert (
                sum(r.startswith(f"{skill} proficiency {level} ≥ ") for r in decision.reasons) == 1
            )
        assert decision.reasons[-1].startswith(("ranked first of", "only eligible agent"))
    else:
        assert decision.reasons[-1].startswith(("overflow to", "fail closed to"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 400) | st.floats(-1, 100) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
near_valid = st.fixed_dictionaries(
    {
        "skills": st.lists(st.sampled_from([*SKILLS, "Bad"]), max_size=4),
        "intents": st.dictionaries(
            st.sampled_from(["billing", "operator", "9bad"]),
            st.fixed_dictionaries(
                {"skills": st.dictionaries(st.sampled_from(SKILLS), st.integers(-1, 7))},
                optional={
                    "overflow": st.sampled_from(["queue:x", "callback", "bad target", []]),
                    "relaxation": st.lists(
                        st.fixed_dictionaries(
                            {"after_s": st.integers(-1, 100)},
                            optional={"min_proficiency": st.integers(0, 6)},
                        ),
                        max_size=3,
                    ),
                },
            ),
        ),
    },
    optional={"relaxation": json_values, "affinity": json_values, "max_candidates": json_values},
)


@EXAMPLES
@given(st.one_of(json_values, near_valid))
def test_config_parser_only_ever_raises_config_error(document: object) -> None:
    text = yaml.safe_dump(document)
    try:
        config = parse_routing_config(Path("r.yaml"), text)
    except ConfigError as error:
        assert all(line.startswith("r.yaml: ") for line in str(error).splitlines())
    else:
        assert config.intents
