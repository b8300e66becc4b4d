"""One contract for both agent state stores: in-process, and the real Redis at 127.0.0.1.

Each Redis case uses its own key prefix and deletes its keys afterwards. Time comes from a
fake clock, so reservation expiry is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from ivr_engine.agents import (
    TRANSITIONS,
    AgentChange,
    AgentState,
    AgentStateStore,
    ChangeCause,
    InMemoryAgentStateStore,
    InvalidTransition,
    RedisAgentStateStore,
    ReservationLost,
    UnknownAgent,
    sweep_reservations,
)
from tests.redis_support import REDIS_URL, delete_prefix, require_redis

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
S = AgentState


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[AgentStateStore]:
    if request.param == "memory":
        memory = InMemoryAgentStateStore(clock=clock)
        yield memory
        await memory.aclose()
        return
    prefix = f"test:{{agents-{uuid.uuid4().hex}}}:"
    await require_redis()
    redis_store = RedisAgentStateStore.from_url(REDIS_URL, prefix=prefix, clock=clock)
    try:
        yield redis_store
    finally:
        await redis_store.aclose()
        await delete_prefix(prefix)


async def drive_to(store: AgentStateStore, agent_id: str, state: AgentState) -> None:
    """Register an agent and bring it into ``state`` through the public operations."""
    await store.register_agent(agent_id)
    if state == S.LOGGED_OUT:
        return
    if state == S.PAUSED:
        await store.set_state(agent_id, S.PAUSED)
        return
    await store.set_state(agent_id, S.AVAILABLE)
    steps = [S.AVAILABLE, S.RESERVED, S.RINGING, S.ON_CALL, S.WRAP_UP]
    for step in steps[1 : steps.index(state) + 1]:
        if step == S.RESERVED:
            assert await store.reserve(agent_id, "call-0", 30)
        elif step == S.WRAP_UP:
            assert await store.release(agent_id, "call-0")
        else:
            assert await store.confirm(agent_id, "call-0") == step
    assert (await store.get(agent_id)).state == state


async def next_change(feed: AsyncIterator[AgentChange]) -> AgentChange:
    async with asyncio.timeout(2):
        return await anext(feed)


# --------------------------------------------------------------------------- registration


async def test_register_creates_a_logged_out_agent(store: AgentStateStore) -> None:
    agent = await store.register_agent("a1", max_concurrent=2)
    assert (agent.state, agent.since, agent.idle_since) == (S.LOGGED_OUT, T0, None)
    assert (agent.interactions, agent.max_concurrent, agent.reservation) == ((), 2, None)
    await store.set_state("a1", S.AVAILABLE)
    again = await store.register_agent("a1", max_concurrent=3)
    assert (again.state, again.max_concurrent) == (S.AVAILABLE, 3)
    assert await store.get("a1") == again


async def test_unknown_agents_are_refused(store: AgentStateStore) -> None:
    with pytest.raises(UnknownAgent, match="'ghost' is not registered"):
        await store.get("ghost")
    with pytest.raises(UnknownAgent):
        await store.set_state("ghost", S.AVAILABLE)
    with pytest.raises(UnknownAgent):
        await store.reserve("ghost", "c1", 10)
    with pytest.raises(UnknownAgent):
        await store.confirm("ghost", "c1")
    with pytest.raises(UnknownAgent):
        await store.release("ghost", "c1")
    with pytest.raises(ValueError, match="max_concurrent"):
        await store.register_agent("a1", max_concurrent=0)


# --------------------------------------------------------------------------- transitions


@pytest.mark.parametrize("source", list(AgentState))
async def test_set_state_follows_the_transition_table(
    store: AgentStateStore, source: AgentState
) -> None:
    for target in AgentState:
        agent_id = f"{source}-to-{target}"
        await drive_to(store, agent_id, source)
        allowed = ChangeCause.SET_STATE in TRANSITIONS.get((source, target), frozenset())
        if allowed or target == source:
            assert (await store.set_state(agent_id, target)).state == target
        else:
            with pytest.raises(InvalidTransition) as refused:
                await store.set_state(agent_id, target)
            assert (refused.value.current, refused.value.target) == (source, target)
            assert (await store.get(agent_id)).state == source


async def test_invalid_transition_names_the_states_and_the_way_in(store: AgentStateStore) -> None:
    await drive_to(store, "a1", S.PAUSED)
    with pytest.raises(InvalidTransition, match=r"'a1': cannot go from 'paused' to 'on_call': "):
        await store.set_state("a1", S.ON_CALL)
    with pytest.raises(InvalidTransition, match="through reserve, confirm, release"):
        await store.set_state("a1", S.WRAP_UP)


async def test_becoming_available_starts_idle_time(
    store: AgentStateStore, clock: FakeClock
) -> None:
    await store.register_agent("a1")
    login = clock.advance(5)
    agent = await store.set_state("a1", S.AVAILABLE)
    assert (agent.state, agent.since, agent.idle_since) == (S.AVAILABLE, login, login)
    clock.advance(5)
    assert (await store.set_state("a1", S.AVAILABLE)).since == login  # same state: no-op
    explicit = T0 + timedelta(minutes=1)
    assert (await store.set_state("a1", S.PAUSED, explicit)).since == explicit


async def test_a_call_goes_reserved_ringing_on_call_wrap_up(
    store: AgentStateStore, clock: FakeClock
) -> None:
    await drive_to(store, "a1", S.AVAILABLE)
    idle = (await store.get("a1")).idle_since
    assert await store.reserve("a1", "c1", ttl_s=10)
    reserved = await store.get("a1")
    assert reserved.state == S.RESERVED
    assert reserved.reservation is not None
    assert reserved.reservation.call_id == "c1"
    assert reserved.reservation.expires_at == T0 + timedelta(seconds=10)
    assert await store.confirm("a1", "c1") == S.RINGING
    ringing = await store.get("a1")
    assert ringing.reservation is not None and ringing.reservation.expires_at is None
    answered = clock.advance(3)
    assert await store.confirm("a1", "c1") == S.ON_CALL
    on_call = await store.get("a1")
    assert (on_call.since, on_call.interactions, on_call.reservation) == (answered, ("c1",), None)
    assert on_call.idle_since == idle
    assert await store.release("a1", "c1")
    assert (await store.get("a1")).state == S.WRAP_UP
    assert (await store.get("a1")).interaction_count == 0


async def test_release_without_wrap_up_makes_the_agent_idle_again(
    store: AgentStateStore, clock: FakeClock
) -> None:
    await drive_to(store, "a1", S.ON_CALL)
    ended = clock.advance(60)
    assert await store.release("a1", "call-0", wrap_up=False)
    agent = await store.get("a1")
    assert (agent.state, agent.since, agent.idle_since) == (S.AVAILABLE, ended, ended)


async def test_unanswered_reservation_keeps_the_place_in_line(
    store: AgentStateStore, clock: FakeClock
) -> None:
    await drive_to(store, "a1", S.RINGING)
    idle = (await store.get("a1")).idle_since
    clock.advance(20)
    assert await store.release("a1", "call-0")
    agent = await store.get("a1")
    assert (agent.state, agent.idle_since, agent.reservation) == (S.AVAILABLE, idle, None)
    assert not await store.release("a1", "call-0")  # nothing held any more


async def test_ring_no_answer_can_pause_the_agent(store: AgentStateStore) -> None:
    await drive_to(store, "a1", S.RINGING)
    agent = await store.set_state("a1", S.PAUSED)
    assert (agent.state, agent.reservation) == (S.PAUSED, None)
    with pytest.raises(ReservationLost):
        await store.confirm("a1", "call-0")


# --------------------------------------------------------------------------- reservations


async def test_an_agent_is_reserved_by_one_call_only(store: AgentStateStore) -> None:
    await drive_to(store, "a1", S.AVAILABLE)
    assert await store.reserve("a1", "c1", 10)
    assert not await store.reserve("a1", "c2", 10)
    assert await store.reserve("a1", "c1", 10)  # the holder asking again
    with pytest.raises(ReservationLost, match="no reservation for call 'c2'"):
        await store.confirm("a1", "c2")
    assert not await store.release("a1", "c2")
    assert (await store.get("a1")).reservation is not None


@pytest.mark.parametrize("state", [S.LOGGED_OUT, S.PAUSED, S.WRAP_UP, S.RINGING, S.ON_CALL])
async def test_busy_or_absent_agents_cannot_be_reserved(
    store: AgentStateStore, state: AgentState
) -> None:
    await drive_to(store, "a1", state)
    assert not await store.reserve("a1", "c9", 10)
    assert (await store.get("a1")).state == state


async def test_reserve_checks_its_arguments(store: AgentStateStore) -> None:
    await drive_to(store, "a1", S.AVAILABLE)
    with pytest.raises(ValueError, match="ttl_s"):
        await store.reserve("a1", "c1", 0)
    with pytest.raises(ValueError, match="call_id"):
        await store.reserve_first(["a1"], "", 5)


async def test_an_unconfirmed_reservation_expires_after_its_ttl(
    store: AgentStateStore, clock: FakeClock
) -> None:
    await drive_to(store, "a1", S.AVAILABLE)
    idle = (await store.get("a1")).idle_since
    assert await store.reserve("a1", "c1", ttl_s=10)
    clock.advance(9.5)
    assert (await store.get("a1")).state == S.RESERVED
    assert not await store.reserve("a1", "c2", 10)
    clock.advance(0.5)
    agent = await store.get("a1")
    expiry = T0 + timedelta(seconds=10)
    assert (agent.state, agent.since, agent.idle_since, agent.reservation) == (
        S.AVAILABLE,
        expiry,
        idle,
        None,
    )
    assert (await store.snapshot())["a1"] == agent
    with pytest.raises(ReservationLost):
        await store.confirm("a1", "c1")
    assert await store.reserve("a1", "c2", 10)


async def test_a_confirmed_reservation_does_not_expire(
    store: AgentStateStore, clock: FakeClock
) -> None:
    await drive_to(store, "a1", S.AVAILABLE)
    assert await store.reserve("a1", "c1", ttl_s=5)
    assert await store.confirm("a1", "c1") == S.RINGING
    clock.advance(600)
    assert await store.expire_reservations() == []
    assert await store.confirm("a1", "c1") == S.ON_CALL


async def test_a_ringing_reservation_expires_after_its_ring_ttl(
    store: AgentStateStore, clock: FakeClock
) -> None:
    """The safety net for a give-back that never comes (the engine died, a reply was lost):
    ringing with a ``ring_ttl_s`` ends by itself, the agent keeps their place in line."""
    await drive_to(store, "a1", S.AVAILABLE)
    idle = (await store.get("a1")).idle_since
    assert await store.reserve("a1", "c1", ttl_s=5)
    assert await store.confirm("a1", "c1", ring_ttl_s=50) == S.RINGING
    ringing = await store.get("a1")
    expiry = T0 + timedelta(seconds=50)
    assert ringing.reservation is not None and ringing.reservation.expires_at == expiry
    async with store.changes() as feed:
        clock.advance(49.5)
        assert (await store.get("a1")).state == S.RINGING
        assert await store.expire_reservations() == []
        assert not await store.reserve("a1", "c2", 10)
        clock.advance(0.5)
        agent = await store.get("a1")
        assert (agent.state, agent.since, agent.idle_since, agent.reservation) == (
            S.AVAILABLE,
            expiry,
            idle,
            None,
        )
        assert (await store.snapshot())["a1"] == agent
        assert await store.expire_reservations() == ["a1"]
        change = await next_change(feed)
    assert (change.cause, change.previous, change.call_id) == (ChangeCause.EXPIRY, S.RINGING, "c1")
    assert (change.at, change.agent) == (expiry, agent)
    assert ChangeCause.EXPIRY in TRANSITIONS[(S.RINGING, S.AVAILABLE)]
    with pytest.raises(ReservationLost):
        await store.confirm("a1", "c1")  # an answer after the expiry finds nothing held
    assert await store.reserve("a1", "c2", 10)


async def test_an_answer_before_the_ring_expiry_ends_the_expiry(
    store: AgentStateStore, clock: FakeClock
) -> None:
    await drive_to(store, "a1", S.AVAILABLE)
    assert await store.reserve("a1", "c1", ttl_s=5)
    assert await store.confirm("a1", "c1", ring_ttl_s=50) == S.RINGING
    clock.advance(49)
    assert await store.confirm("a1", "c1") == S.ON_CALL
    clock.advance(600)
    assert await store.expire_reservations() == []
    agent = await store.get("a1")
    assert (agent.state, agent.interactions, agent.reservation) == (S.ON_CALL, ("c1",), None)


async def test_a_released_ringing_agent_leaves_no_expiry_behind(
    store: AgentStateStore, clock: FakeClock
) -> None:
    await drive_to(store, "a1", S.AVAILABLE)
    assert await store.reserve("a1", "c1", ttl_s=5)
    await store.confirm("a1", "c1", ring_ttl_s=50)
    assert await store.release("a1", "c1", wrap_up=False)
    assert await store.reserve("a1", "c2", ttl_s=500)
    await store.confirm("a1", "c2")  # no ring_ttl_s: rings until given back
    clock.advance(100)
    assert await store.expire_reservations() == []
    assert (await store.get("a1")).state == S.RINGING


async def test_confirm_checks_the_ring_ttl(store: AgentStateStore) -> None:
    await drive_to(store, "a1", S.AVAILABLE)
    assert await store.reserve("a1", "c1", ttl_s=5)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="ring_ttl_s"):
            await store.confirm("a1", "c1", ring_ttl_s=bad)
    assert (await store.get("a1")).state == S.RESERVED


async def test_the_sweeper_frees_a_ringing_agent_nobody_gave_back(
    store: AgentStateStore, clock: FakeClock
) -> None:
    await drive_to(store, "a1", S.AVAILABLE)
    assert await store.reserve("a1", "c1", ttl_s=5)
    await store.confirm("a1", "c1", ring_ttl_s=30)
    async with store.changes() as feed:
        sweeper = asyncio.create_task(sweep_reservations(store, interval_s=0.01))
        try:
            clock.advance(30)
            change = await next_change(feed)  # published by the sweep, nothing else ran
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
    assert (change.cause, change.previous, change.agent.state) == (
        ChangeCause.EXPIRY,
        S.RINGING,
        S.AVAILABLE,
    )


async def test_expire_reservations_writes_expiries_down(
    store: AgentStateStore, clock: FakeClock
) -> None:
    for agent_id in ("a1", "a2", "a3"):
        await drive_to(store, agent_id, S.AVAILABLE)
    assert await store.reserve("a1", "c1", ttl_s=5)
    assert await store.reserve("a2", "c2", ttl_s=50)
    assert await store.reserve("a3", "c3", ttl_s=5)
    clock.advance(5)
    assert await store.expire_reservations() == ["a1", "a3"]
    assert await store.expire_reservations() == []
    states = {agent_id: agent.state for agent_id, agent in (await store.snapshot()).items()}
    assert states == {"a1": S.AVAILABLE, "a2": S.RESERVED, "a3": S.AVAILABLE}


async def test_reserve_first_takes_the_first_free_candidate_in_order(
    store: AgentStateStore,
) -> None:
    await drive_to(store, "busy", S.ON_CALL)
    for agent_id in ("a1", "a2"):
        await drive_to(store, agent_id, S.AVAILABLE)
    candidates = ["busy", "ghost", "a2", "a1"]
    assert await store.reserve_first(candidates, "c1", 10) == "a2"
    assert await store.reserve_first(candidates, "c1", 10) == "a2"  # already holds it
    assert await store.reserve_first(candidates, "c2", 10) == "a1"
    assert await store.reserve_first(candidates, "c3", 10) is None
    assert await store.reserve_first([], "c4", 10) is None


async def test_concurrent_reservations_never_share_an_agent(store: AgentStateStore) -> None:
    pool = [f"a{i}" for i in range(5)]
    for agent_id in pool:
        await drive_to(store, agent_id, S.AVAILABLE)
    results = await asyncio.gather(
        *(store.reserve_first(pool, f"c{i}", 30) for i in range(20)),
        *(store.reserve(pool[i % 5], f"d{i}", 30) for i in range(10)),
    )
    winners = [agent for agent in results[:20] if agent is not None]
    direct = sum(1 for won in results[20:] if won)
    assert len(set(winners)) == len(winners)
    assert len(winners) + direct == len(pool)
    holders = {a.reservation.call_id for a in (await store.snapshot()).values() if a.reservation}
    assert len(holders) == len(pool)


# --------------------------------------------------------------------------- multi-session


async def test_a_multi_session_agent_takes_interactions_up_to_its_limit(
    store: AgentStateStore,
) -> None:
    await store.register_agent("a1", max_concurrent=2)
    await store.set_state("a1", S.AVAILABLE)
    assert await store.reserve("a1", "chat-1", 10)
    await store.confirm("a1", "chat-1")
    assert await store.confirm("a1", "chat-1") == S.ON_CALL
    assert await store.reserve("a1", "chat-2", 10)  # one free slot while on_call
    pending = await store.get("a1")
    assert pending.state == S.ON_CALL and pending.reservation is not None
    assert not await store.reserve("a1", "chat-3", 10)  # one pending reservation at a time
    assert await store.confirm("a1", "chat-2") == S.ON_CALL  # no ringing for the second
    full = await store.get("a1")
    assert (full.interactions, full.reservation) == (("chat-1", "chat-2"), None)
    assert not await store.reserve("a1", "chat-3", 10)
    assert await store.release("a1", "chat-1")
    assert (await store.get("a1")).state == S.ON_CALL
    assert await store.release("a1", "chat-2")
    assert (await store.get("a1")).state == S.WRAP_UP


async def test_the_last_interaction_ending_hands_over_to_the_pending_call(
    store: AgentStateStore,
) -> None:
    await drive_to(store, "a1", S.ON_CALL)
    await store.register_agent("a1", max_concurrent=2)
    assert await store.reserve("a1", "chat-2", 10)
    assert await store.release("a1", "call-0")
    agent = await store.get("a1")
    assert (agent.state, agent.interactions) == (S.RESERVED, ())
    assert await store.confirm("a1", "chat-2") == S.RINGING


# --------------------------------------------------------------------------- snapshot, feed


async def test_snapshot_gives_the_routing_inputs_for_every_agent(
    store: AgentStateStore, clock: FakeClock
) -> None:
    assert await store.snapshot() == {}
    await drive_to(store, "b", S.ON_CALL)
    clock.advance(1)
    await drive_to(store, "a", S.AVAILABLE)
    await drive_to(store, "c", S.LOGGED_OUT)
    snapshot = await store.snapshot()
    assert list(snapshot) == ["a", "b", "c"]
    assert [(s.state, s.interaction_count) for s in snapshot.values()] == [
        (S.AVAILABLE, 0),
        (S.ON_CALL, 1),
        (S.LOGGED_OUT, 0),
    ]
    assert snapshot["a"].idle_since == T0 + timedelta(seconds=1)


async def test_the_change_feed_follows_every_transition(store: AgentStateStore) -> None:
    await store.register_agent("a1")
    async with store.changes() as feed:
        await store.set_state("a1", S.AVAILABLE)
        await store.set_state("a1", S.AVAILABLE)  # no-op: nothing published
        assert await store.reserve("a1", "c1", 10)
        await store.confirm("a1", "c1")
        await store.confirm("a1", "c1")
        await store.release("a1", "c1")
        seen = [await next_change(feed) for _ in range(5)]
    assert [(c.cause, c.previous, c.agent.state) for c in seen] == [
        (ChangeCause.SET_STATE, S.LOGGED_OUT, S.AVAILABLE),
        (ChangeCause.RESERVE, S.AVAILABLE, S.RESERVED),
        (ChangeCause.CONFIRM, S.RESERVED, S.RINGING),
        (ChangeCause.CONFIRM, S.RINGING, S.ON_CALL),
        (ChangeCause.RELEASE, S.ON_CALL, S.WRAP_UP),
    ]
    assert [c.call_id for c in seen] == [None, "c1", "c1", "c1", "c1"]
    assert seen[3].agent.interactions == ("c1",)
    assert all(c.at == T0 and c.agent.agent_id == "a1" for c in seen)


async def test_the_feed_reports_registrations_and_expiries(
    store: AgentStateStore, clock: FakeClock
) -> None:
    async with store.changes() as first, store.changes() as second:
        await store.register_agent("a1")
        await store.set_state("a1", S.AVAILABLE)
        await store.reserve("a1", "c1", 5)
        clock.advance(5)
        await store.expire_reservations()
        for feed in (first, second):
            causes = [(await next_change(feed)).cause for _ in range(4)]
            assert causes[0] == ChangeCause.REGISTERED
            assert causes[3] == ChangeCause.EXPIRY


async def test_closing_the_store_ends_open_feeds(store: AgentStateStore) -> None:
    async with store.changes() as feed:
        listener = asyncio.create_task(anext(feed, None))
        await asyncio.sleep(0)  # let the listener block on the feed
        await store.aclose()
        async with asyncio.timeout(2):
            assert await listener is None
