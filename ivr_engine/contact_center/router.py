"""``AgentRouter``: the I/O shell around the pure routing policy.

Per call: the roster as it is now (``roster`` may be a callable: the live roster, edited
over the HTTP API without a restart) + live agent states (one snapshot) + the customer's
last agent (timeline) → pure ``route_call`` → reserve the best candidate that is still free
(one atomic step, so two calls never get the same agent) → mark it ringing → screen pop in
the background. The caller's wait (relaxation stages, overflow targets, the affinity's
wait limit) counts from ``waiting_since`` when given (a reroute: ``IVR_WAIT_START``, written
with the first route) and plausible (``plausible_wait_start``), else from now.

Failure policy: the caller is never held by our infrastructure. The agent store down or
slow, or every candidate taken by a concurrent call, → the intent's overflow target (its
Asterisk queue). The last-agent lookup is bounded and fails open (no affinity).

An agent reserved for a call that will not dial them is given back (``release``): when the
router gives up after the reservation (a late confirm reply: the store may have run it), as
soon as a reserve reply the router gave up on arrives (it names the agent), and when the
caller hangs up before the dialplan gets the variables (``IvrFlow``). A ringing
agent is also freed by the store ``ring_expiry_s`` after the confirm (default
``ring_timeout_s`` + ``RING_EXPIRY_MARGIN_S``: the transfer prompt and the dial set-up), a
safety net should the engine die or a give-back be lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime

from ivr_engine.agents import AgentStateStore
from ivr_engine.agents.errors import AgentStateError
from ivr_engine.agents.model import AgentSnapshot as LiveSnapshot
from ivr_engine.contact_center.load_tracker import LoadTracker
from ivr_engine.desktop import DesktopHub
from ivr_engine.desktop.pop import ring_from_call
from ivr_engine.domain.errors import IvrEngineError
from ivr_engine.domain.models import KnownField
from ivr_engine.flows.call_record import CallRecord, RouteResult
from ivr_engine.ports import TimelineStore
from ivr_engine.routing import (
    AgentChosen,
    AgentSnapshot,
    AgentState,
    LastAgent,
    Overflow,
    Roster,
    RoutingConfig,
    RoutingRequest,
    route_call,
)
from ivr_engine.stopping import cancel_and_wait

log = logging.getLogger(__name__)
RELEASE_TIMEOUT_S = 5.0  # a give-back runs in the background: the caller never waits on it
RING_EXPIRY_MARGIN_S = 30.0  # a ringing agent nobody gave back is freed this long after the ring
MAX_WAIT_S = 86400.0  # a wait start read back from the channel further back is garbage

AGENT_ANSWERED = "call.agent_answered"  # timeline event type written by the AMI tracker
# The same fact as the call-event bridge records it (crm_bridge.calls), when the bridge runs
# and the tracker's own timeline events are off (agent_events_on_timeline: false).
BRIDGE_AGENT_ANSWERED = "call.answered_by_agent"
AGENT_ANSWER_TYPES = frozenset({AGENT_ANSWERED, BRIDGE_AGENT_ANSWERED})


def policy_states(live: Mapping[str, LiveSnapshot]) -> dict[str, AgentSnapshot]:
    """Live agent state → the policy's view (idle time counts from ``idle_since``)."""
    states = {}
    for agent_id, snap in live.items():
        since = snap.since
        if snap.state.value == "available" and snap.idle_since is not None:
            since = snap.idle_since
        states[agent_id] = AgentSnapshot(
            agent_id=agent_id,
            state=AgentState(snap.state.value),
            state_since=since,
            interactions=snap.interaction_count,
        )
    return states


class AgentRouter:
    def __init__(
        self,
        *,
        roster: Roster | Callable[[], Roster],
        config: RoutingConfig,
        agents: AgentStateStore,
        timeline: TimelineStore,
        hub: DesktopHub | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ring_timeout_s: float = 20.0,
        ring_expiry_s: float | None = None,
        store_timeout_s: float = 0.5,
        load: LoadTracker | None = None,
    ) -> None:
        if ring_expiry_s is None:
            ring_expiry_s = ring_timeout_s + RING_EXPIRY_MARGIN_S
        if not ring_expiry_s > ring_timeout_s:
            raise ValueError(
                f"ring_expiry_s ({ring_expiry_s}) must be longer than ring_timeout_s "
                f"({ring_timeout_s}): an agent still ringing would be offered another call"
            )
        self._roster = roster if callable(roster) else (lambda: roster)
        self._config = config
        self._agents = agents
        self._timeline = timeline
        self._hub = hub
        self._clock = clock
        self._ring_timeout_s = ring_timeout_s
        self._reserve_ttl_s = ring_timeout_s + 10.0
        self._ring_expiry_s = ring_expiry_s
        self._store_timeout_s = store_timeout_s
        self._pops: dict[asyncio.Task[int], str] = {}  # pop task → call id
        self._releases: set[asyncio.Task[None]] = set()
        self._late_reserves: set[asyncio.Task[str | None]] = set()
        self._load = load

    @property
    def ring_expiry_s(self) -> float:
        """How long after the ring the store frees an agent nobody gave back."""
        return self._ring_expiry_s

    async def route(
        self,
        record: CallRecord,
        known_fields: Mapping[str, KnownField],
        exclude: frozenset[str] = frozenset(),
        waiting_since: datetime | None = None,
    ) -> RouteResult:
        intent = record.intent or "operator"
        now = self._clock()
        since = plausible_wait_start(waiting_since, now)
        result = await self._route(record, known_fields, exclude, intent, now, since)
        if self._load is not None:
            self._load.call_routed(record.call.call_id, intent, since, result.agent_id)
        return result

    async def _route(
        self,
        record: CallRecord,
        known_fields: Mapping[str, KnownField],
        exclude: frozenset[str],
        intent: str,
        now: datetime,
        waiting_since: datetime,
    ) -> RouteResult:
        request = RoutingRequest(
            intent=intent,
            waiting_since=waiting_since,
            last_agent=await self._last_agent(record.customer_id, record.case_id),
            exclude=exclude,
        )
        held: list[str] = []  # the agent reserve_first reserved, once it answered
        call_id = record.call.call_id
        try:
            async with asyncio.timeout(self._store_timeout_s):
                live = await self._agents.snapshot(now=now)
                decision = route_call(
                    request, self._roster(), policy_states(live), self._config, now
                )
                if isinstance(decision, Overflow):
                    return _overflow(decision.target, decision.reasons)
                chosen = await self._reserve(decision, call_id, now, held)
        except (TimeoutError, AgentStateError) as exc:
            log.warning("call %s: agent state unavailable (%r); overflow", call_id, exc)
            for agent_id in held:  # the confirm may have run: nobody will dial them
                self._release_soon(agent_id, call_id)
            return _overflow(self._default_target(record), (f"agent state unavailable: {exc}",))
        except asyncio.CancelledError:
            for agent_id in held:
                self._release_soon(agent_id, call_id)
            raise
        if chosen is None:
            reason = "every matching agent was taken by another call a moment ago"
            return _overflow(self._default_target(record), (*decision.reasons, reason))
        agent_id, endpoint, reasons = chosen
        self._pop(agent_id, record, known_fields, reasons)
        return RouteResult(f"agent:{agent_id}", agent_id, endpoint, reasons, self._ring_timeout_s)

    async def _reserve(
        self, decision: AgentChosen, call_id: str, now: datetime, held: list[str]
    ) -> tuple[str, str, tuple[str, ...]] | None:
        order = [c.agent_id for c in decision.candidates]
        reserving = asyncio.create_task(
            self._agents.reserve_first(order, call_id, self._reserve_ttl_s, now=now)
        )
        try:  # shielded: a reply the router gives up on still comes, and names the agent
            agent_id = await asyncio.shield(reserving)
        except asyncio.CancelledError:  # timed out (or the call went): give back when it comes
            self._give_back_when_reserved(reserving, call_id)
            raise
        if agent_id is None:
            return None
        held.append(agent_id)
        ring_ttl_s = self._ring_expiry_s  # reserved → ringing, expiring after that long
        await self._agents.confirm(agent_id, call_id, ring_ttl_s=ring_ttl_s, now=now)
        if agent_id == decision.agent_id:
            return agent_id, decision.endpoint, decision.reasons
        taken = next(c for c in decision.candidates if c.agent_id == agent_id)
        note = f"{decision.agent_id} was taken by another call; next best {agent_id}"
        return agent_id, taken.endpoint, (*decision.reasons, note)

    def _give_back_when_reserved(self, reserving: asyncio.Task[str | None], call_id: str) -> None:
        self._late_reserves.add(reserving)

        def arrived(task: asyncio.Task[str | None]) -> None:
            self._late_reserves.discard(task)
            if task.cancelled() or task.exception() is not None:
                return  # reserved nobody, or the store failed: nothing is known to give back
            agent_id = task.result()
            if agent_id is not None:
                log.info("call %s: reserve reply came too late: giving %s back", call_id, agent_id)
                self._release_soon(agent_id, call_id)

        reserving.add_done_callback(arrived)

    async def release(self, call_id: str, agent_id: str) -> None:
        """Give back the agent reserved for ``call_id`` (nobody will dial them) and withdraw
        its screen pop; never raises, and a cancelled caller still gives the agent back."""
        await asyncio.shield(self._release_soon(agent_id, call_id))

    def _release_soon(self, agent_id: str, call_id: str) -> asyncio.Task[None]:
        task = asyncio.create_task(self._give_back(agent_id, call_id), name=f"free-{agent_id}")
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)
        return task

    async def _give_back(self, agent_id: str, call_id: str) -> None:
        for pop, pop_call in list(self._pops.items()):
            if pop_call == call_id:
                pop.cancel()
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                released = await self._agents.release(agent_id, call_id, wrap_up=False)
        except (TimeoutError, AgentStateError) as exc:
            log.warning("call %s: giving back agent %s failed: %r", call_id, agent_id, exc)
            return
        log.info("call %s: agent %s given back (released: %s)", call_id, agent_id, released)
        latest = self._hub.latest_pop(agent_id) if self._hub is not None else None
        if self._hub is not None and latest is not None and latest["call_id"] == call_id:
            await self._hub.clear_pop(agent_id)

    async def _last_agent(self, customer_id: str | None, case_id: str | None) -> LastAgent | None:
        """The agent of the case being continued (any channel), else of the last call."""
        if customer_id is None:
            return None
        try:
            async with asyncio.timeout(self._store_timeout_s):
                recent = await self._timeline.recent_events(customer_id, limit=50)
        except (TimeoutError, IvrEngineError) as exc:
            log.info("last agent of %s unknown (%r); no affinity", customer_id, exc)
            return None
        if case_id is not None:
            in_case = last_agent_from(e for e in recent if e.case_id == case_id)
            if in_case is not None:
                return in_case
        return last_agent_from(e for e in recent if e.event_type in AGENT_ANSWER_TYPES)

    def _default_target(self, record: CallRecord) -> str:
        return record.target or self._config.fallback_target

    def _pop(
        self,
        agent_id: str,
        record: CallRecord,
        known: Mapping[str, KnownField],
        reasons: tuple[str, ...],
    ) -> None:
        if self._hub is None:
            return
        ring = ring_from_call(
            record, known_fields=known, routing_reasons=reasons, verified=record.verified
        )
        task = asyncio.create_task(self._hub.pop(agent_id, ring), name=f"pop-{agent_id}")
        self._pops[task] = record.call.call_id
        task.add_done_callback(self._pop_done)

    def _pop_done(self, task: asyncio.Task[int]) -> None:
        self._pops.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("screen pop failed: %r", task.exception())

    async def aclose(self) -> None:
        await cancel_and_wait([*self._late_reserves, *self._pops, *self._releases])


def plausible_wait_start(claimed: datetime | None, now: datetime) -> datetime:
    """When the caller started waiting: ``claimed`` (read back from the channel on a
    reroute), unless it is missing, in the future (clock skew, rounding) or more than
    ``MAX_WAIT_S`` ago (garbage); then ``now``, as for a caller who starts waiting now."""
    if claimed is None or claimed.tzinfo is None or claimed > now:
        return now
    if (now - claimed).total_seconds() > MAX_WAIT_S:
        log.warning("wait start %s is over %.0f s ago: counting from now", claimed, MAX_WAIT_S)
        return now
    return claimed


def last_agent_from(events: Iterable[object]) -> LastAgent | None:
    """The newest agent-answer event's agent (events newest first)."""
    for event in events:
        data = getattr(event, "data", {})
        agent_id = data.get("agent_id") if isinstance(data, Mapping) else None
        occurred_at = getattr(event, "occurred_at", None)
        if isinstance(agent_id, str) and isinstance(occurred_at, datetime):
            if occurred_at.tzinfo is None:
                occurred_at = occurred_at.replace(tzinfo=UTC)
            return LastAgent(agent_id=agent_id, helped_at=occurred_at)
    return None


def _overflow(target: str, reasons: tuple[str, ...]) -> RouteResult:
    return RouteResult(target=target, reasons=reasons)


__all__ = [
    "AGENT_ANSWERED",
    "AgentRouter",
    "last_agent_from",
    "plausible_wait_start",
    "policy_states",
]
