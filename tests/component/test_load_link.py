"""The load across engine workers, in one process over real Unix socket pairs: workers'
``LinkedLoadTracker``s and ``LoadLink``s, the supervisor's ``LoadLedger``.

Through the link the load is what one ``LoadTracker`` would give; a call routed on one
link and ended on another is one call, even when the end arrives first; a ledger that does
not read never holds the sender up (bounded, drops counted and reported when it reads
again); a worker's channel that ends (worker 0 restarting) loses nothing; a ledger that
does not answer makes the HTTP routes answer 503; bad lines never bring the ledger down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_engine.agents import AgentState, InMemoryAgentStateStore
from ivr_engine.contact_center import load_wire as wire
from ivr_engine.contact_center.linked_load import LinkedLoadTracker
from ivr_engine.contact_center.load_link import LoadLink
from ivr_engine.contact_center.load_tracker import LoadTracker, LoadUnavailable
from ivr_engine.contact_center.load_view import LoadView
from ivr_engine.contact_center.metrics import load_routes
from ivr_engine.domain.models import CallOutcome
from ivr_engine.workers import load_ledger
from ivr_engine.workers.load_ledger import LoadLedger
from ivr_engine.workers.role import WorkerRole
from tests.component.test_load_view import CONFIG, OPS, ROSTER, T0, _live

STALE_S = 300.0
VIEW = LoadView.from_config(CONFIG, ROSTER)
WAIT_S = 10.0


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@contextlib.asynccontextmanager
async def linked(ledger: LoadLedger, index: int, **limits: Any) -> AsyncIterator[LoadLink]:
    """Worker ``index``'s link, its other end attached to ``ledger`` (as the supervisor
    does for each worker it starts)."""
    ours, theirs = LoadLedger.channel()
    ledger.attach(WorkerRole(index, 2), ours)
    link = await LoadLink.open(theirs.detach(), **limits)
    try:
        yield link
    finally:
        await link.aclose()


async def until(done: Callable[[], bool], poke: Callable[[], None] = lambda: None) -> None:
    async with asyncio.timeout(WAIT_S):
        while not done():
            poke()
            await asyncio.sleep(0.01)


def apply(op: tuple[Any, ...], tracker: LoadTracker, now: datetime) -> None:
    match op:
        case ("wait", call_id, intent):
            tracker.call_waiting(call_id, intent, now)
        case ("ring", call_id, agent_id):
            tracker.call_ringing(call_id, agent_id)
        case ("routed", call_id, intent, agent_id):
            tracker.call_routed(call_id, intent, now, agent_id)
        case ("miss", call_id):
            tracker.call_missed(call_id)
        case ("answer", call_id):
            tracker.call_answered(call_id)
        case ("end", call_id):
            tracker.call_ended(call_id)
        case ("count", outcome):
            tracker.count_call(outcome)


COUNT = st.tuples(st.just("count"), st.sampled_from([o.value for o in CallOutcome]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(OPS, COUNT), max_size=30))
def test_through_the_link_the_load_is_what_one_tracker_gives(ops: list[tuple[Any, ...]]) -> None:
    asyncio.run(_one_tracker_and_the_link(ops))


async def _one_tracker_and_the_link(ops: list[tuple[Any, ...]]) -> None:
    local, clock = LoadTracker(VIEW, stale_after_s=STALE_S), Clock()
    ledger = LoadLedger(stale_after_s=STALE_S)
    live = _live(a1=AgentState.AVAILABLE, a2=AgentState.RINGING)
    async with linked(ledger, 0) as link:
        remote = LinkedLoadTracker(VIEW, link, clock)
        for op in ops:
            if op[0] == "tick":
                clock.now += timedelta(seconds=op[1] * 3)
                continue
            apply(op, local, clock.now)
            apply(op, remote, clock.now)
            assert await remote.read_snapshot(live, clock.now) == local.snapshot(live, clock.now)
    await ledger.aclose()


async def test_a_call_routed_by_one_worker_and_answered_on_another_is_one_call() -> None:
    ledger, clock = LoadLedger(), Clock()
    async with linked(ledger, 0) as zero, linked(ledger, 1) as one:
        worker_0 = LinkedLoadTracker(VIEW, zero, clock)
        worker_1 = LinkedLoadTracker(VIEW, one, clock)
        worker_1.call_routed("c1", "billing", T0, "a1")
        worker_1.count_call("routed")
        assert (await worker_1.read_snapshot({}, T0))["totals"]["ringing"] == 1
        clock.now = T0 + timedelta(seconds=4)
        worker_0.call_answered("c1")  # worker 0's AMI tracker
        load = await worker_0.read_snapshot({}, clock.now)
        assert load["totals"] == {"waiting": 0, "ringing": 0, "longest_wait_s": 0.0, "agents": 0}
        assert load["counters"]["calls"]["routed"] == 1

        # The end first (worker 0's AMI), worker 1's routing update held up until after it.
        worker_0.call_ended("c2")  # at T0 + 4 s
        await worker_0.read_snapshot({}, clock.now)  # applied
        worker_1.call_routed("c2", "billing", T0 + timedelta(seconds=1), None)
        load = await worker_1.read_snapshot({}, clock.now)
        assert load["totals"]["waiting"] == 0  # not a call waiting for ever
        assert load["counters"]["route_decisions"] == {"agent": 1, "overflow": 1}
    await ledger.aclose()


async def test_a_ledger_not_reading_holds_nobody_up_and_the_drops_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bound, ticks, per_tick = 64 * 1024, 300, 100
    ours, theirs = LoadLedger.channel()  # nobody reads ``ours`` yet
    link = await LoadLink.open(theirs.detach(), max_buffered_bytes=bound)
    tracker = LinkedLoadTracker(VIEW, link, Clock())
    for _ in range(ticks):  # every call returns at once: no await anywhere
        for _ in range(per_tick):
            tracker.count_call("routed")
        link.flush()  # the end of a tick
    assert link.updates_dropped > 0
    assert link._writer.transport.get_write_buffer_size() <= bound + per_tick * 20
    assert "load updates dropped: the supervisor's load ledger is not reading" in caplog.text

    ledger = LoadLedger()
    ledger.attach(WorkerRole(1, 2), ours)  # the supervisor reads again
    try:

        def all_accounted() -> bool:
            applied = ledger.tracker.counters()["calls"]["routed"]
            reported = ledger.worker_counters().get(1, {}).get("updates_dropped")
            return reported == link.updates_dropped and applied + reported == ticks * per_tick

        await until(all_accounted, poke=link.flush)
        assert "load updates flow to the supervisor again" in caplog.text
    finally:
        await link.aclose()
        await ledger.aclose()


async def test_worker_0s_channel_ending_loses_nothing_of_the_load() -> None:
    """Worker 0 killed and restarted: its successor reads what the ledger kept."""
    ledger, clock = LoadLedger(), Clock()
    async with linked(ledger, 1) as one:
        worker_1 = LinkedLoadTracker(VIEW, one, clock)
        one.watch("pops_lost", lambda: 2)
        worker_1.call_routed("c1", "billing", T0, None)
        async with linked(ledger, 0) as first:
            worker_0 = LinkedLoadTracker(VIEW, first, clock)
            first.watch("pops_lost", lambda: 3)
            worker_0.call_routed("c2", "cancel", T0, "a3")
            worker_0.count_call("routed")
            before = await worker_0.read_snapshot({}, T0)
            first._writer.transport.abort()  # SIGKILL: no goodbye
        await until(lambda: len(ledger._channels) == 1)  # worker 0's channel retired
        async with linked(ledger, 0) as second:
            restarted = LinkedLoadTracker(VIEW, second, clock)
            assert await restarted.read_snapshot({}, T0) == before
            assert before["totals"]["waiting"] == 2
            assert restarted.engine_total("pops_lost") == 5  # worker 0's last count kept
            assert restarted.workers[0] == {"pops_lost": 3, "updates_dropped": 0}
    await ledger.aclose()


async def test_a_ledger_that_does_not_answer_makes_the_routes_answer_503() -> None:
    ours, theirs = LoadLedger.channel()  # the supervisor's loop stuck: nobody reads
    link = await LoadLink.open(theirs.detach())
    tracker = LinkedLoadTracker(VIEW, link, Clock(), read_timeout_s=0.1)
    app = web.Application()
    app.add_routes(load_routes(tracker, InMemoryAgentStateStore(), Clock()))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        for path in ("/v1/load", "/metrics"):
            resp = await client.get(path)
            assert resp.status == 503
            error = (await resp.json())["error"]
            assert (
                error["code"] == "load_unavailable"
                and "did not answer within 0.1 s" in error["message"]
            )
        ours.close()  # the supervisor gone
        await until(lambda: link._closed)
        with pytest.raises(LoadUnavailable, match="not reading"):
            await link.request_state(T0, 5.0)
        tracker.count_call("routed")
        link.flush()
        assert link.updates_dropped == 1
    finally:
        await client.close()
        await link.aclose()


async def test_bad_lines_are_skipped_and_an_oversized_one_ends_only_its_channel(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    monkeypatch.setattr(load_ledger, "MAX_LINE_BYTES", 4096)
    ledger = LoadLedger()
    ours, theirs = LoadLedger.channel()
    ledger.attach(WorkerRole(1, 2), ours)
    reader, writer = await asyncio.open_unix_connection(sock=theirs)
    good = wire.routed("c1", "billing", T0, None)
    writer.write(b"garbage\n" + wire.encode(["u", [good, ["x"], ["o", "routed"]]]))
    writer.write(wire.encode(["c", {"pops_lost": -1}]) + wire.encode(["q", 1, wire.to_us(T0)]))
    reply = wire.decode(await reader.readline())
    state = wire.parse_state(reply[2])
    assert [c.call_id for c in state.calls] == ["c1"]
    assert state.counters["calls"]["routed"] == 1
    assert caplog.text.count("sent what is not a load message") == 1  # the first one only
    async with linked(ledger, 0) as other:
        writer.write(b"[" + b" " * 8192 + b"]\n")  # over the limit: that channel ends
        assert await reader.read() == b""
        assert "worker 1's channel ends" in caplog.text
        other_tracker = LinkedLoadTracker(VIEW, other, Clock())
        assert (await other_tracker.read_snapshot({}, T0))["totals"]["waiting"] == 1
    writer.close()
    await ledger.aclose()
