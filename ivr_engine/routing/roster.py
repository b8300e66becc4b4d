"""The agent roster, indexed by skill once so a routing decision only scans skilled agents.

Build it when profiles change (login, supervisor edit), not per call: the index is what
keeps a decision over 1,000 agents cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ivr_engine.routing.models import Agent

SkillPool = tuple[tuple[Agent, int], ...]  # (agent, proficiency), sorted by agent_id


@dataclass(frozen=True, slots=True)
class Roster:
    agents: tuple[Agent, ...]  # sorted by agent_id
    by_id: Mapping[str, Agent]
    by_skill: Mapping[str, SkillPool]

    def pool(self, skill: str) -> SkillPool:
        return self.by_skill.get(skill, ())


def build_roster(agents: Iterable[Agent]) -> Roster:
    """Index agents by id and by skill; agent ids must be unique."""
    by_id: dict[str, Agent] = {}
    for agent in agents:
        if agent.agent_id in by_id:
            raise ValueError(f"agent {agent.agent_id!r} is on the roster twice")
        by_id[agent.agent_id] = agent
    ordered = tuple(by_id[agent_id] for agent_id in sorted(by_id))
    pools: dict[str, list[tuple[Agent, int]]] = {}
    for agent in ordered:
        for skill, level in agent.skills.items():
            pools.setdefault(skill, []).append((agent, level))
    return Roster(
        agents=ordered,
        by_id=MappingProxyType(by_id),
        by_skill=MappingProxyType({skill: tuple(pool) for skill, pool in pools.items()}),
    )
