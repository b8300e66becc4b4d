"""Third-round property tests: agent state in the real Redis and its codec.

* Any sequence of operations, with any agent and call ids Redis can carry, gives the same
  answers, errors and snapshots from ``RedisAgentStateStore`` (Lua → JSON →
  ``redis_codec``) as from ``InMemoryAgentStateStore``: the codec round-trips every state.
* ``decode_agent`` / ``decode_change`` of any document raise ``AgentStateUnavailable``
  (the store's documented peer error) or decode; an agent hash changed by something else
  makes ``get`` of that agent raise ``AgentStateUnavailable`` and ``snapshot`` leave it out
  (both raised ``ValueError``, ``TypeError`` or ``OverflowError``: a 500 on
  ``GET /v1/agents`` and the desktop, and no routing to any agent), and a
  message on the change channel that is not a change is skipped (``JSONDecodeError``
  ended the feed, and with it the desktop's live state task)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from ivr_engine.agents import (
    AgentState,
    AgentStateError,
    AgentStateStore,
    AgentStateUnavailable,
    InMemoryAgentStateStore,
    RedisAgentStateStore,
)
from ivr_engine.agents.redis_codec import decode_agent, decode_change
from tests.redis_support import REDIS_URL, delete_prefix

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
_FEW = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


# text Redis can carry (UTF-8: no lone surrogates), and ids that look like Lua patterns,
# JSON, numbers or key separators
_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6)
_id = st.one_of(
    st.sampled_from(["a1", "a2", "1", "0", "1e3", "{}", "[]", "a:b", "%d", "é", "😀", "a b",
                     "null", "true", "\x00", "-1", "1.5"]),
    _text,
)  # fmt: skip
_op = st.one_of(
    st.tuples(st.just("register"), _id, st.integers(1, 3)),
    st.tuples(st.just("set_state"), _id, st.sampled_from(list(AgentState))),
    st.tuples(st.just("reserve"), _id, _id, st.sampled_from([0.5, 5.0, 60.0])),
    st.tuples(st.just("reserve_first"), st.lists(_id, max_size=3), _id),
    st.tuples(st.just("confirm"), _id, _id),
    st.tuples(st.just("release"), _id, _id, st.booleans()),
    st.tuples(st.just("sweep")),
    st.tuples(st.just("advance"), st.sampled_from([0.001, 1.0, 30.0])),
    st.tuples(st.just("get"), _id),
)


async def _outcome(work: Awaitable[Any]) -> tuple[str, Any]:
    try:
        return "ok", await work
    except Exception as exc:  # compared by type: both stores must fail the same way
        return "error", type(exc).__name__


async def _apply(store: AgentStateStore, clock: _Clock, op: tuple[Any, ...]) -> tuple[str, Any]:
    name, *args = op
    if name == "advance":
        clock.now += timedelta(seconds=args[0])
        return "ok", None
    if name == "register":
        return await _outcome(store.register_agent(args[0], max_concurrent=args[1]))
    if name == "set_state":
        return await _outcome(store.set_state(args[0], args[1]))
    if name == "reserve":
        return await _outcome(store.reserve(args[0], args[1], args[2]))
    if name == "reserve_first":
        return await _outcome(store.reserve_first(args[0], args[1], 5.0))
    if name == "confirm":
        return await _outcome(store.confirm(args[0], args[1]))
    if name == "release":
        return await _outcome(store.release(args[0], args[1], wrap_up=args[2]))
    if name == "sweep":
        kind, expired = await _outcome(store.expire_reservations())
        return kind, sorted(expired) if kind == "ok" else expired
    return await _outcome(store.get(args[0]))


@pytest.mark.usefixtures("redis_url")
@_FEW
@example(
    ops=[
        ("register", "\x00", 1),
        ("set_state", "\x00", AgentState.AVAILABLE),
        ("reserve", "\x00", "{}", 0.5),
        ("confirm", "\x00", "{}"),
        ("get", "\x00"),
    ]
)
@given(st.lists(_op, min_size=1, max_size=25))
def test_redis_store_answers_like_the_memory_store(ops: list[tuple[Any, ...]]) -> None:
    async def main() -> None:
        prefix = f"fuzz3:{{agents-{uuid.uuid4().hex}}}:"
        mem_clock, redis_clock = _Clock(), _Clock()
        memory = InMemoryAgentStateStore(clock=mem_clock)
        redis = RedisAgentStateStore.from_url(REDIS_URL, prefix=prefix, clock=redis_clock)
        try:
            for op in ops:
                want = await _apply(memory, mem_clock, op)
                got = await _apply(redis, redis_clock, op)
                assert got == want, (op, got, want)
            assert await redis.snapshot() == await memory.snapshot()
        finally:
            await redis.aclose()
            await memory.aclose()
            await delete_prefix(prefix)

    asyncio.run(main())


# --------------------------------------------------------------------------- hostile docs

_atom = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
    st.sampled_from(["available", "paused", "bogus", "", "1e999", "nan", "inf", "-1",
                     "1700000000.5", "1.5", "x", "{}"]),
)  # fmt: skip
_json = st.recursive(
    _atom,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
_agent_doc = st.fixed_dictionaries(
    {},
    optional={key: _json for key in ("id", "state", "since", "idle_since", "max", "res_call",
                                     "res_exp", "calls")},
)  # fmt: skip
_GOOD = {"id": "a1", "state": "available", "since": "1700000000.5", "max": "1", "calls": {}}


@given(st.one_of(_agent_doc, _json, st.builds(lambda d: {**_GOOD, **d}, _agent_doc)))
@example(doc={**_GOOD, "since": "1e300"})  # OverflowError
@example(doc={**_GOOD, "since": 6.77680361916768e16})  # OSError EOVERFLOW from the C library
@example(doc={**_GOOD, "max": "1.5"})
@example(doc={**_GOOD, "state": "bogus"})
def test_decode_agent_raises_agent_state_unavailable_only(doc: Any) -> None:
    try:
        snap = decode_agent(doc)
    except AgentStateUnavailable:
        return
    assert snap.agent_id == doc["id"]


_change = st.fixed_dictionaries(
    {},
    optional={"cause": st.sampled_from(["set_state", "reserve", "bogus"]) | _json,
              "at": _json, "previous": _json, "call_id": _json,
              "agent": st.one_of(_agent_doc, st.just(_GOOD))},
)  # fmt: skip


@given(st.one_of(_change.map(json.dumps), st.text(max_size=30), st.binary(max_size=30)))
@example(payload="garbage")
@example(payload=b"\xff")
@example(payload="[" * 5000)
def test_decode_change_raises_agent_state_unavailable_only(payload: str | bytes) -> None:
    with contextlib.suppress(AgentStateUnavailable):
        decode_change(payload)


_FIELDS = ["state", "since", "idle_since", "max", "res_call", "res_exp"]


@pytest.mark.usefixtures("redis_url")
@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@example(field="state", value="bogus")
@example(field="since", value="x")
@example(field="since", value="1e300")
@example(field="max", value="1.5")
@given(
    st.sampled_from(_FIELDS),
    st.one_of(st.sampled_from(["", "x", "nan", "inf", "1e300", "-1", "bogus", "1.5"]), _text),
)
def test_a_corrupt_agent_hash_is_agent_state_unavailable(field: str, value: str) -> None:
    async def main() -> None:
        prefix = f"fuzz3:{{agents-{uuid.uuid4().hex}}}:"
        store = RedisAgentStateStore.from_url(REDIS_URL, prefix=prefix)
        raw = Redis.from_url(REDIS_URL)
        try:
            await store.register_agent("a1")
            await raw.hset(prefix + "agent:a1", field, value)
            for work in (store.get("a1"), store.set_state("a1", "paused")):
                with contextlib.suppress(AgentStateError):  # or InvalidTransition: "bogus"
                    await work
            await store.snapshot()  # never raises for one changed hash: it leaves it out
        finally:
            await raw.aclose()
            await store.aclose()
            await delete_prefix(prefix)

    asyncio.run(main())


@pytest.mark.usefixtures("redis_url")
def test_a_message_on_the_change_channel_that_is_not_a_change_is_skipped() -> None:
    async def main() -> None:
        prefix = f"fuzz3:{{agents-{uuid.uuid4().hex}}}:"
        store = RedisAgentStateStore.from_url(REDIS_URL, prefix=prefix)
        raw = Redis.from_url(REDIS_URL)
        try:
            await store.register_agent("a1")
            async with store.changes() as feed:
                for junk in ("garbage", "[]", '{"cause":"set_state"}', "[" * 5000):
                    await raw.publish(prefix + "changes", junk)
                await store.set_state("a1", AgentState.AVAILABLE)
                async with asyncio.timeout(5):
                    change = await anext(aiter(feed))
                assert change.agent.state is AgentState.AVAILABLE
            # not UTF-8: redis-py fails decoding the whole message, so the feed ends with
            # the documented error (the desktop resubscribes and resends every state)
            async with store.changes() as feed:
                await raw.publish(prefix + "changes", b"\xff")
                try:
                    async with asyncio.timeout(5):
                        await anext(aiter(feed))
                except AgentStateUnavailable:
                    pass
        finally:
            await raw.aclose()
            await store.aclose()
            await delete_prefix(prefix)

    asyncio.run(main())
