"""The JSON shapes of the load view (``GET /v1/load``): one ``LoadSnapshot`` per answer.

Kept apart from ``load_view.py`` (which re-exports them) so the shapes read in one place.
"""

from __future__ import annotations

from typing_extensions import TypedDict


class SkillLoadJson(TypedDict):
    skill: str
    waiting: int  # calls waiting for this skill, ringing ones included
    ringing: int
    longest_wait_s: float  # 0 when nobody waits
    agents: dict[str, int]  # state -> agents with this skill (any proficiency)


class TeamLoadJson(TypedDict):
    team: str
    agents: dict[str, int]  # state -> agents of this team


class TotalsJson(TypedDict):
    waiting: int  # distinct calls
    ringing: int
    longest_wait_s: float
    agents: int  # agents in the live state


class CountersJson(TypedDict):
    calls: dict[str, int]  # IVR outcome -> calls (routed, abandoned, failed)
    route_decisions: dict[str, int]  # agent / overflow -> decisions (reroutes included)
    forgotten_calls: int  # calls dropped as stale or over the cap (their end was never seen)


class LoadSnapshot(TypedDict):
    at: str  # ISO 8601
    agent_state_available: bool  # False: the live agent state could not be read
    skills: list[SkillLoadJson]  # sorted by skill
    agents: dict[str, int]  # state -> agents, every state present
    teams: list[TeamLoadJson]  # sorted by team
    totals: TotalsJson
    counters: CountersJson


__all__ = [
    "CountersJson",
    "LoadSnapshot",
    "SkillLoadJson",
    "TeamLoadJson",
    "TotalsJson",
]
