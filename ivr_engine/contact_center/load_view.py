"""Real-time load of the contact centre, the pure part: calls waiting per skill, agents per
state.

``LoadView`` is built once from the routing config and the roster (which skills each intent
needs, each agent's skills and team); ``aggregate`` turns the calls being waited on plus one
live agent snapshot into a ``LoadSnapshot``, a JSON-able dict. No I/O, no state: the calls
come from ``LoadTracker`` (``load_tracker.py``), fed by the router and the AMI tracker.

A call needing several skills counts under each of them; totals count each call once. A
call whose intent has no routing rule counts under ``NO_SKILL``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from ivr_engine.agents.model import AgentSnapshot, AgentState
from ivr_engine.contact_center.load_json import (
    CountersJson,
    LoadSnapshot,
    SkillLoadJson,
    TeamLoadJson,
    TotalsJson,
)
from ivr_engine.routing import Roster, RoutingConfig

NO_SKILL = "(none)"  # skill row of calls whose intent has no routing rule
NO_TEAM = "(none)"  # team row of agents without a team (or not on the roster)


@dataclass(frozen=True, slots=True)
class WaitingCall:
    call_id: str
    intent: str
    since: datetime  # when the caller started waiting for an agent
    agent_id: str | None = None  # the agent whose phone rings, if any


def _state_counts(states: Iterable[AgentState]) -> dict[str, int]:
    counts = Counter(states)
    return {state.value: counts[state] for state in AgentState}


def wait_s(call: WaitingCall, now: datetime) -> float:
    return max(0.0, (now - call.since).total_seconds())


@dataclass(frozen=True, slots=True)
class LoadView:
    skills: tuple[str, ...]  # every skill some intent needs, sorted
    skills_by_intent: Mapping[str, tuple[str, ...]]
    agent_skills: Mapping[str, frozenset[str]]
    agent_team: Mapping[str, str]

    @classmethod
    def from_config(cls, config: RoutingConfig, roster: Roster) -> LoadView:
        by_intent = {
            intent: tuple(sorted({need.skill for need in rule.skills}))
            for intent, rule in config.intents.items()
        }
        return cls(
            skills=tuple(sorted({skill for needs in by_intent.values() for skill in needs})),
            skills_by_intent=MappingProxyType(by_intent),
            agent_skills=MappingProxyType({a.agent_id: frozenset(a.skills) for a in roster.agents}),
            agent_team=MappingProxyType({a.agent_id: a.team or NO_TEAM for a in roster.agents}),
        )

    @classmethod
    def empty(cls) -> LoadView:
        """No skills, no agents: for a tracker that only keeps state (the supervisor's)."""
        return cls((), MappingProxyType({}), MappingProxyType({}), MappingProxyType({}))

    def skills_of(self, intent: str) -> tuple[str, ...]:
        return self.skills_by_intent.get(intent) or (NO_SKILL,)

    def aggregate(
        self,
        calls: Iterable[WaitingCall],
        agents: Mapping[str, AgentSnapshot],
        now: datetime,
        *,
        counters: CountersJson,
        agent_state_available: bool = True,
    ) -> LoadSnapshot:
        calls = list(calls)
        return {
            "at": now.isoformat(),
            "agent_state_available": agent_state_available,
            "skills": self._skill_rows(calls, agents, now),
            "agents": _state_counts(a.state for a in agents.values()),
            "teams": self._team_rows(agents),
            "totals": {
                "waiting": len(calls),
                "ringing": sum(1 for c in calls if c.agent_id is not None),
                "longest_wait_s": max((wait_s(c, now) for c in calls), default=0.0),
                "agents": len(agents),
            },
            "counters": counters,
        }

    def _skill_rows(
        self, calls: list[WaitingCall], agents: Mapping[str, AgentSnapshot], now: datetime
    ) -> list[SkillLoadJson]:
        waits: dict[str, list[WaitingCall]] = {skill: [] for skill in self.skills}
        for call in calls:
            for skill in self.skills_of(call.intent):
                waits.setdefault(skill, []).append(call)
        return [
            {
                "skill": skill,
                "waiting": len(waiting),
                "ringing": sum(1 for c in waiting if c.agent_id is not None),
                "longest_wait_s": max((wait_s(c, now) for c in waiting), default=0.0),
                "agents": _state_counts(
                    a.state
                    for agent_id, a in agents.items()
                    if skill in self.agent_skills.get(agent_id, ())
                ),
            }
            for skill, waiting in sorted(waits.items())
        ]

    def _team_rows(self, agents: Mapping[str, AgentSnapshot]) -> list[TeamLoadJson]:
        members: dict[str, list[AgentState]] = {team: [] for team in self.agent_team.values()}
        for agent_id, agent in agents.items():
            members.setdefault(self.agent_team.get(agent_id, NO_TEAM), []).append(agent.state)
        return [
            {"team": team, "agents": _state_counts(states)}
            for team, states in sorted(members.items())
        ]


__all__ = [
    "NO_SKILL",
    "NO_TEAM",
    "CountersJson",
    "LoadSnapshot",
    "LoadView",
    "SkillLoadJson",
    "TeamLoadJson",
    "TotalsJson",
    "WaitingCall",
    "wait_s",
]
