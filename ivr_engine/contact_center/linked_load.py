"""``LinkedLoadTracker``: the load tracker of one of several engine workers.

It keeps no calls of its own. Every update the router, the IVR's call sink and (in worker
0) the AMI tracker give it goes down the worker's ``LoadLink`` to the one ``LoadTracker``
the supervisor keeps (``ivr_engine/workers/load_ledger.py``), so a call routed by worker 1
and answered on worker 0's AMI connection is one call there. ``read_snapshot`` (worker 0's
``/v1/load`` and ``/metrics``) asks that ledger for its calls and counters and aggregates
them with this worker's ``view`` (kept current by the live roster), exactly as one process
would. Answers and ends are stamped with the time they happened, so the ledger can tell a
late "waiting" from another worker apart from a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Final

from ivr_engine.agents.model import AgentSnapshot
from ivr_engine.contact_center import load_wire as wire
from ivr_engine.contact_center.load_link import LoadLink
from ivr_engine.contact_center.load_tracker import LoadTracker, LoadUnavailable, RouteKind
from ivr_engine.contact_center.load_view import LoadSnapshot, LoadView
from ivr_engine.domain.models import CallOutcome
from ivr_engine.routing import Roster, RoutingConfig
from ivr_engine.routing.models import require_aware

READ_TIMEOUT_S: Final = 2.0  # the ledger's answer to worker 0; then the route answers 503


class LinkedLoadTracker(LoadTracker):
    """Every mutator sends one update and returns at once (``True``: sent, the ledger
    decides whether the call was known)."""

    def __init__(
        self,
        view: LoadView,
        link: LoadLink,
        clock: Callable[[], datetime],
        *,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        super().__init__(view)
        self.link = link
        self._clock = clock
        self._read_timeout_s = read_timeout_s
        self.workers: wire.WorkerCounters = {}  # per-worker counters, as of the last read

    def call_waiting(self, call_id: str, intent: str, since: datetime) -> None:
        require_aware(since, f"call {call_id!r} since")
        self.link.send(wire.waiting(call_id, intent, since))

    def call_ringing(self, call_id: str, agent_id: str) -> bool:
        self.link.send(wire.ringing(call_id, agent_id))
        return True

    def call_missed(self, call_id: str) -> bool:
        self.link.send(wire.missed(call_id))
        return True

    def call_answered(self, call_id: str, *, at: datetime | None = None) -> bool:
        self.link.send(wire.answered(call_id, at or self._clock()))
        return True

    def call_ended(self, call_id: str, *, at: datetime | None = None) -> bool:
        self.link.send(wire.ended(call_id, at or self._clock()))
        return True

    def call_routed(self, call_id: str, intent: str, since: datetime, agent_id: str | None) -> None:
        require_aware(since, f"call {call_id!r} since")
        self.link.send(wire.routed(call_id, intent, since, agent_id))

    def count_call(self, outcome: CallOutcome | str) -> None:
        self.link.send(wire.call_counted(outcome))

    def count_route_decision(self, kind: RouteKind | str) -> None:
        self.link.send(wire.decision_counted(kind))

    def forget_stale(self, now: datetime) -> int:
        return 0  # the ledger forgets, when it is read

    def snapshot(
        self,
        agent_snapshots: Mapping[str, AgentSnapshot],
        now: datetime,
        *,
        agent_state_available: bool = True,
    ) -> LoadSnapshot:
        raise LoadUnavailable("a worker's load is read from the ledger: use read_snapshot")

    async def read_snapshot(
        self,
        agent_snapshots: Mapping[str, AgentSnapshot],
        now: datetime,
        *,
        agent_state_available: bool = True,
    ) -> LoadSnapshot:
        require_aware(now, "now")
        state = await self.link.request_state(now, self._read_timeout_s)
        self.workers = state.workers
        return self.view.aggregate(
            state.calls,
            agent_snapshots,
            now,
            counters=state.counters,
            agent_state_available=agent_state_available,
        )

    def engine_total(self, counter: str) -> int:
        """A per-process counter summed over the workers (as of the last read)."""
        return sum(named.get(counter, 0) for named in self.workers.values())


def load_tracker_for(
    config: RoutingConfig,
    roster: Roster,
    link: LoadLink | None,
    clock: Callable[[], datetime],
) -> LoadTracker:
    """The process's own tracker (one engine process), or a linked one (several workers)."""
    if link is None:
        return LoadTracker.from_config(config, roster)
    return LinkedLoadTracker(LoadView.from_config(config, roster), link, clock)
