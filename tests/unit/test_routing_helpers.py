"""Shared builders for the routing tests (no tests here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from ivr_engine.routing import (
    AffinityPolicy,
    Agent,
    AgentSnapshot,
    AgentState,
    IntentRule,
    LastAgent,
    OverflowStage,
    RelaxationStage,
    RoutingConfig,
    RoutingDecision,
    RoutingRequest,
    SkillRequirement,
    build_roster,
    route_call,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
STAGES = (
    RelaxationStage(20.0, min_proficiency=2),
    RelaxationStage(60.0, min_proficiency=1),
    RelaxationStage(120.0, min_proficiency=1, any_language=True),
)
BILLING_OVERFLOW = (OverflowStage(0.0, "queue:billing"), OverflowStage(240.0, "callback"))


def agent(
    agent_id: str,
    skills: Mapping[str, int] | None = None,
    languages: Iterable[str] = ("en",),
    *,
    max_concurrent: int = 1,
    team: str = "blue",
) -> Agent:
    return Agent(
        agent_id=agent_id,
        name=f"Agent {agent_id}",
        endpoint=f"PJSIP/agent-{agent_id}",
        skills={"billing": 4} if skills is None else skills,
        languages=frozenset(languages),
        team=team,
        max_concurrent=max_concurrent,
    )


def snap(
    agent_id: str,
    state: AgentState = AgentState.AVAILABLE,
    *,
    idle_s: float = 60.0,
    interactions: int = 0,
) -> AgentSnapshot:
    return AgentSnapshot(agent_id, state, NOW - timedelta(seconds=idle_s), interactions)


def rule(
    intent: str,
    skills: Mapping[str, int],
    overflow: tuple[OverflowStage, ...] = BILLING_OVERFLOW,
    relaxation: tuple[RelaxationStage, ...] = STAGES,
) -> IntentRule:
    requirements = tuple(SkillRequirement(s, level) for s, level in skills.items())
    return IntentRule(intent, requirements, overflow, relaxation)


def config(
    *rules: IntentRule,
    affinity: AffinityPolicy | None = None,
    max_candidates: int = 5,
) -> RoutingConfig:
    chosen = rules or (
        rule("billing", {"billing": 4}),
        rule("operator", {"general": 1}, (OverflowStage(0.0, "queue:general"),)),
    )
    return RoutingConfig(
        intents={r.intent: r for r in chosen},
        fallback_target="queue:general",
        affinity=affinity or AffinityPolicy(window_days=30.0, max_wait_s=60.0),
        max_candidates=max_candidates,
    )


def request(
    intent: str = "billing",
    *,
    waited_s: float = 0.0,
    language: str | None = None,
    last: tuple[str, float] | None = None,  # (agent id, days ago)
    exclude: Iterable[str] = (),
) -> RoutingRequest:
    last_agent = None if last is None else LastAgent(last[0], NOW - timedelta(days=last[1]))
    return RoutingRequest(
        intent=intent,
        waiting_since=NOW - timedelta(seconds=waited_s),
        language=language,
        last_agent=last_agent,
        exclude=frozenset(exclude),
    )


def decide(
    agents: Iterable[Agent],
    states: Iterable[AgentSnapshot],
    req: RoutingRequest | None = None,
    cfg: RoutingConfig | None = None,
    now: datetime = NOW,
) -> RoutingDecision:
    return route_call(
        req or request(),
        build_roster(agents),
        {s.agent_id: s for s in states},
        cfg or config(),
        now,
    )
