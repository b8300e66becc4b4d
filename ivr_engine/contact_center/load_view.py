"""Real-time load of the contact centre: calls waiting per skill, agents per state.

Two pieces, neither doing I/O:

* ``LoadView``: pure. Built once from the routing config and the roster (which skills each
  intent needs, each agent's skills and team); ``aggregate`` turns the calls being waited
  on plus one live agent snapshot into a ``LoadSnapshot``, a JSON-able dict.
* ``LoadTracker``: the small amount of state behind it, fed by the router and the AMI
  tracker. A call *waits* from the moment the IVR routes it (to an agent or to the
  overflow queue) until it is answered or ends; while an agent's phone rings it is
  *ringing* (and still waiting). A reroute keeps the time the caller started waiting.

A call needing several skills counts under each of them; totals count each call once. A
call whose intent has no routing rule counts under ``NO_SKILL``. Calls the tracker never
hears end (an AMI outage) are forgotten after ``stale_after_s`` and counted as forgotten.

With several engine workers the tracker each worker holds is a ``LinkedLoadTracker``
(``linked_load.py``): its updates go to the one ``LoadTracker`` the supervisor keeps
(``ivr_engine/workers/load_ledger.py``), and ``read_snapshot`` asks that one. Updates from
two workers can then arrive out of order: an answer or an end given a time (``at``) is
remembered, and a later-arriving "waiting" that started before it is ignored.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from ivr_engine.agents.model import AgentSnapshot, AgentState
from ivr_engine.contact_center.load_json import (
    CountersJson,
    LoadSnapshot,
    SkillLoadJson,
    TeamLoadJson,
    TotalsJson,
)
from ivr_engine.domain.errors import IvrEngineError
from ivr_engine.domain.models import CallOutcome
from ivr_engine.routing import Roster, RoutingConfig
from ivr_engine.routing.models import require_aware

NO_SKILL = "(none)"  # skill row of calls whose intent has no routing rule
NO_TEAM = "(none)"  # team row of agents without a team (or not on the roster)
DEFAULT_STALE_AFTER_S = 4 * 3600.0
DEFAULT_MAX_CALLS = 50_000
MAX_FINISHED = 10_000  # ends remembered to ignore late "waiting" updates (several workers)


class RouteKind(StrEnum):
    AGENT = "agent"
    OVERFLOW = "overflow"


class LoadUnavailable(IvrEngineError):
    """The engine's load state could not be read (several workers: the supervisor's ledger
    did not answer in time). The HTTP routes answer 503."""


# --------------------------------------------------------------------------- pure view


@dataclass(frozen=True, slots=True)
class WaitingCall:
    call_id: str
    intent: str
    since: datetime  # when the caller started waiting for an agent
    agent_id: str | None = None  # the agent whose phone rings, if any


def _state_counts(states: Iterable[AgentState]) -> dict[str, int]:
    counts = Counter(states)
    return {state.value: counts[state] for state in AgentState}


def _wait_s(call: WaitingCall, now: datetime) -> float:
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
                "longest_wait_s": max((_wait_s(c, now) for c in calls), default=0.0),
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
                "longest_wait_s": max((_wait_s(c, now) for c in waiting), default=0.0),
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


# --------------------------------------------------------------------------- state


class LoadTracker:
    """The calls being waited on, and the counters; the router and the AMI tracker feed it.

    Every method is synchronous and O(1) (``snapshot`` aside): safe to call from any
    coroutine on the loop, never blocks a call. Unknown call ids are ignored (False).
    """

    def __init__(
        self,
        view: LoadView,
        *,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        max_calls: int = DEFAULT_MAX_CALLS,
    ) -> None:
        if not stale_after_s > 0 or max_calls < 1:
            raise ValueError("stale_after_s must be > 0 and max_calls at least 1")
        self.view = view
        self._stale_after_s = stale_after_s
        self._max_calls = max_calls
        self._calls: dict[str, WaitingCall] = {}  # insertion order: oldest first
        self._outcomes: Counter[CallOutcome] = Counter()
        self._decisions: Counter[RouteKind] = Counter()
        self._forgotten = 0
        self._finished: OrderedDict[str, datetime] = OrderedDict()  # call id -> ``at``

    @classmethod
    def from_config(
        cls,
        config: RoutingConfig,
        roster: Roster,
        *,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        max_calls: int = DEFAULT_MAX_CALLS,
    ) -> LoadTracker:
        view = LoadView.from_config(config, roster)
        return cls(view, stale_after_s=stale_after_s, max_calls=max_calls)

    def __len__(self) -> int:
        return len(self._calls)

    def calls(self) -> tuple[WaitingCall, ...]:
        return tuple(self._calls.values())

    def call_waiting(self, call_id: str, intent: str, since: datetime) -> None:
        """Routed to the overflow queue (or about to ring): waiting, not ringing.

        A call already waiting keeps its start and takes the new intent."""
        require_aware(since, f"call {call_id!r} since")
        finished = self._finished.get(call_id)
        if finished is not None and since < finished:
            return  # a late update (another worker's): the call was answered or ended since
        known = self._calls.get(call_id)
        if known is not None:
            self._calls[call_id] = replace(known, intent=intent, agent_id=None)
            return
        self._calls[call_id] = WaitingCall(call_id, intent, since)
        while len(self._calls) > self._max_calls:
            del self._calls[next(iter(self._calls))]
            self._forgotten += 1

    def call_ringing(self, call_id: str, agent_id: str) -> bool:
        known = self._calls.get(call_id)
        if known is None:
            return False
        self._calls[call_id] = replace(known, agent_id=agent_id)
        return True

    def call_missed(self, call_id: str) -> bool:
        """The agent did not answer: back to waiting (a reroute may ring the next one)."""
        known = self._calls.get(call_id)
        if known is None:
            return False
        self._calls[call_id] = replace(known, agent_id=None)
        return True

    def call_answered(self, call_id: str, *, at: datetime | None = None) -> bool:
        """Waited on no more. With ``at``, a "waiting" that started earlier and arrives
        later (from another worker) is ignored."""
        return self._finish(call_id, at)

    def call_ended(self, call_id: str, *, at: datetime | None = None) -> bool:
        return self._finish(call_id, at)

    def _finish(self, call_id: str, at: datetime | None) -> bool:
        if at is not None:
            require_aware(at, f"call {call_id!r} at")
            self._finished[call_id] = at
            self._finished.move_to_end(call_id)
            if len(self._finished) > MAX_FINISHED:
                self._finished.popitem(last=False)  # O(1), unlike a dict's oldest key
        return self._calls.pop(call_id, None) is not None

    def call_routed(self, call_id: str, intent: str, since: datetime, agent_id: str | None) -> None:
        """The router's one call: waiting, ringing ``agent_id`` if one was reserved, and
        the decision counted."""
        self.call_waiting(call_id, intent, since)
        if agent_id is None:
            self.count_route_decision(RouteKind.OVERFLOW)
            return
        self.call_ringing(call_id, agent_id)
        self.count_route_decision(RouteKind.AGENT)

    def count_call(self, outcome: CallOutcome | str) -> None:
        self._outcomes[CallOutcome(outcome)] += 1

    def count_route_decision(self, kind: RouteKind | str) -> None:
        self._decisions[RouteKind(kind)] += 1

    def forget_stale(self, now: datetime) -> int:
        """Drop calls waiting longer than ``stale_after_s``; how many were dropped."""
        stale = [c.call_id for c in self._calls.values() if _wait_s(c, now) > self._stale_after_s]
        for call_id in stale:
            del self._calls[call_id]
        self._forgotten += len(stale)
        return len(stale)

    def counters(self) -> CountersJson:
        return {
            "calls": {o.value: self._outcomes[o] for o in CallOutcome},
            "route_decisions": {k.value: self._decisions[k] for k in RouteKind},
            "forgotten_calls": self._forgotten,
        }

    def snapshot(
        self,
        agent_snapshots: Mapping[str, AgentSnapshot],
        now: datetime,
        *,
        agent_state_available: bool = True,
    ) -> LoadSnapshot:
        require_aware(now, "now")
        self.forget_stale(now)
        return self.view.aggregate(
            self._calls.values(),
            agent_snapshots,
            now,
            counters=self.counters(),
            agent_state_available=agent_state_available,
        )

    async def read_snapshot(
        self,
        agent_snapshots: Mapping[str, AgentSnapshot],
        now: datetime,
        *,
        agent_state_available: bool = True,
    ) -> LoadSnapshot:
        """``snapshot`` for the HTTP routes: a ``LinkedLoadTracker`` (several workers) asks
        the engine's ledger instead, and may raise ``LoadUnavailable``."""
        return self.snapshot(agent_snapshots, now, agent_state_available=agent_state_available)


__all__ = [
    "NO_SKILL",
    "NO_TEAM",
    "CountersJson",
    "LoadSnapshot",
    "LoadTracker",
    "LoadUnavailable",
    "LoadView",
    "RouteKind",
    "SkillLoadJson",
    "TeamLoadJson",
    "TotalsJson",
    "WaitingCall",
]
