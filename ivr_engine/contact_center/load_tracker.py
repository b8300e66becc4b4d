"""Real-time load of the contact centre, the state part: ``LoadTracker``, the calls being
waited on and the counters behind ``LoadView`` (``load_view.py``). No I/O.

Fed by the router and the AMI tracker. A call *waits* from the moment the IVR routes it (to
an agent or to the overflow queue) until it is answered or ends; while an agent's phone
rings it is *ringing* (and still waiting). A reroute keeps the time the caller started
waiting. Calls the tracker never hears end (an AMI outage) are forgotten after
``stale_after_s`` and counted as forgotten.

With several engine workers the tracker each worker holds is a ``LinkedLoadTracker``
(``linked_load.py``): its updates go to the one ``LoadTracker`` the supervisor keeps
(``ivr_engine/workers/load_ledger.py``), and ``read_snapshot`` asks that one. Updates from
two workers can then arrive out of order: an answer or an end given a time (``at``) is
remembered, and a later-arriving "waiting" that started before it is ignored.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from enum import StrEnum

from ivr_engine.agents.model import AgentSnapshot
from ivr_engine.contact_center.load_json import CountersJson, LoadSnapshot
from ivr_engine.contact_center.load_view import LoadView, WaitingCall, wait_s
from ivr_engine.domain.errors import IvrEngineError
from ivr_engine.domain.models import CallOutcome
from ivr_engine.routing import Roster, RoutingConfig
from ivr_engine.routing.models import require_aware

DEFAULT_STALE_AFTER_S = 4 * 3600.0
DEFAULT_MAX_CALLS = 50_000
MAX_FINISHED = 10_000  # ends remembered to ignore late "waiting" updates (several workers)


class RouteKind(StrEnum):
    AGENT = "agent"
    OVERFLOW = "overflow"


class LoadUnavailable(IvrEngineError):
    """The engine's load state could not be read (several workers: the supervisor's ledger
    did not answer in time). The HTTP routes answer 503."""


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
        stale = [c.call_id for c in self._calls.values() if wait_s(c, now) > self._stale_after_s]
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
    "DEFAULT_MAX_CALLS",
    "DEFAULT_STALE_AFTER_S",
    "MAX_FINISHED",
    "LoadTracker",
    "LoadUnavailable",
    "RouteKind",
]
