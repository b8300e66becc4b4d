"""In-process agent state (the embedded default): a dict of records on one event loop.

Every operation runs without awaiting between its check and its write, so it is atomic with
respect to every other coroutine on the loop. Not shared between processes: use Redis then.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

from ivr_engine.agents import rules
from ivr_engine.agents.errors import UnknownAgent
from ivr_engine.agents.feed import ChangeFanout
from ivr_engine.agents.model import (
    AgentChange,
    AgentSnapshot,
    AgentState,
    ChangeCause,
    to_timestamp,
)
from ivr_engine.agents.rules import AgentRecord


def utc_now() -> datetime:
    return datetime.now(UTC)


def check_ring_ttl(ring_ttl_s: float | None) -> None:
    if ring_ttl_s is not None and not ring_ttl_s > 0:
        raise ValueError(f"ring_ttl_s must be > 0 seconds or None, got {ring_ttl_s!r}")


def check_reserve_args(call_id: str, ttl_s: float) -> None:
    if not call_id:
        raise ValueError("call_id must not be empty")
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be > 0 seconds, got {ttl_s!r}")


class InMemoryAgentStateStore:
    def __init__(
        self, *, clock: Callable[[], datetime] = utc_now, max_feed_backlog: int = 1000
    ) -> None:
        self._clock = clock
        self._agents: dict[str, AgentRecord] = {}
        self._feed = ChangeFanout(max_feed_backlog)

    def _now(self, now: datetime | None) -> float:
        return to_timestamp(self._clock() if now is None else now)

    def _record(self, agent_id: str, now: float) -> AgentRecord:
        rec = self._agents.get(agent_id)
        if rec is None:
            raise UnknownAgent(agent_id)
        self._publish([rules.expire_due(rec, now)])
        return rec

    def _publish(self, changes: Iterable[AgentChange | None]) -> None:
        for change in changes:
            if change is not None:
                self._feed.publish(change)

    async def register_agent(
        self, agent_id: str, *, max_concurrent: int = 1, now: datetime | None = None
    ) -> AgentSnapshot:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        at = self._now(now)
        rec = self._agents.get(agent_id)
        if rec is not None:
            rec.max_concurrent = max_concurrent
            return rec.snapshot()
        rec = AgentRecord(agent_id, AgentState.LOGGED_OUT, at, max_concurrent)
        self._agents[agent_id] = rec
        change = AgentChange(ChangeCause.REGISTERED, rec.snapshot().since, None, rec.snapshot())
        self._publish([change])
        return change.agent

    async def get(self, agent_id: str, *, now: datetime | None = None) -> AgentSnapshot:
        rec = self._agents.get(agent_id)
        if rec is None:
            raise UnknownAgent(agent_id)
        return _effective(rec, self._now(now))

    async def snapshot(self, *, now: datetime | None = None) -> Mapping[str, AgentSnapshot]:
        at = self._now(now)
        return {agent_id: _effective(rec, at) for agent_id, rec in sorted(self._agents.items())}

    async def set_state(
        self, agent_id: str, state: AgentState, now: datetime | None = None
    ) -> AgentSnapshot:
        at = self._now(now)
        rec = self._record(agent_id, at)
        self._publish([rules.set_state(rec, AgentState(state), at)])
        return rec.snapshot()

    async def reserve(
        self, agent_id: str, call_id: str, ttl_s: float, *, now: datetime | None = None
    ) -> bool:
        check_reserve_args(call_id, ttl_s)
        at = self._now(now)
        rec = self._record(agent_id, at)
        self._publish([rules.reserve(rec, call_id, ttl_s, at)])
        return rec.res_call == call_id

    async def reserve_first(
        self,
        candidate_ids: Sequence[str],
        call_id: str,
        ttl_s: float,
        *,
        now: datetime | None = None,
    ) -> str | None:
        check_reserve_args(call_id, ttl_s)
        at = self._now(now)
        for agent_id in candidate_ids:
            if agent_id not in self._agents:
                continue
            rec = self._record(agent_id, at)
            self._publish([rules.reserve(rec, call_id, ttl_s, at)])
            if rec.res_call == call_id:
                return agent_id
        return None

    async def confirm(
        self,
        agent_id: str,
        call_id: str,
        *,
        ring_ttl_s: float | None = None,
        now: datetime | None = None,
    ) -> AgentState:
        check_ring_ttl(ring_ttl_s)
        at = self._now(now)
        rec = self._record(agent_id, at)
        ring_expires = None if ring_ttl_s is None else at + ring_ttl_s
        self._publish([rules.confirm(rec, call_id, at, ring_expires)])
        return rec.state

    async def release(
        self, agent_id: str, call_id: str, *, wrap_up: bool = True, now: datetime | None = None
    ) -> bool:
        at = self._now(now)
        change = rules.release(self._record(agent_id, at), call_id, wrap_up, at)
        self._publish([change])
        return change is not None

    async def expire_reservations(self, *, now: datetime | None = None) -> list[str]:
        at = self._now(now)
        changes = [rules.expire_due(rec, at) for _, rec in sorted(self._agents.items())]
        self._publish(changes)
        return [change.agent.agent_id for change in changes if change is not None]

    def changes(self) -> AbstractAsyncContextManager[AsyncIterator[AgentChange]]:
        return self._feed.subscribe()

    async def aclose(self) -> None:
        self._feed.close()


def _effective(rec: AgentRecord, now: float) -> AgentSnapshot:
    """The agent as of ``now`` without writing (an expired reservation is shown as gone)."""
    if rec.res_expires is None or rec.res_expires > now:
        return rec.snapshot()
    future = copy.deepcopy(rec)
    rules.expire_due(future, now)
    return future.snapshot()
