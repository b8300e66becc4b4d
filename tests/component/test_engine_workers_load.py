"""``GET /v1/load`` and ``/metrics`` with ``ivr-engine run --workers 2``: real supervisor and
worker processes on one FastAGI port, the sample agents with their state in the real Redis,
a fake Asterisk Manager Interface that worker 0's AMI tracker logs in to.

Which worker served a call is read from the kernel (the process holding the engine's end
of the call's TCP connection); the load is read over HTTP from worker 0, the only one
serving HTTP. Before the supervisor kept the load (``ivr_engine/workers/load_ledger.py``),
worker 0 counted only the calls it routed itself, and its restart lost them."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from ivr_engine.agents import AgentState, RedisAgentStateStore
from tests.component.engine_workers import (
    DEADLINE_S,
    REPO,
    EngineProcess,
    HeldCall,
    calls_on_each,
    engine_process,
)
from tests.component.test_ami_fake_peer import FakeAmi, PeerSession
from tests.component.test_engine_workers import pids, run_args
from tests.redis_support import redis_url_for_db

pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="Linux only"),
]

Load = dict[str, Any]


@pytest.fixture
def redis_db() -> Iterator[str]:
    """A Redis database of its own (1..15, one test session at a time holds each, by a lock
    file): the engine keeps its agents under fixed key names (``ivr:{agents}:``)."""
    for db in range(15, 0, -1):
        lock = Path(f"/tmp/ivr-test-redis-db-{db}.lock").open("w")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        try:
            url = redis_url_for_db(db)
            asyncio.run(_flush(url))
            yield url
            asyncio.run(_flush(url))
        finally:
            lock.close()
        return
    pytest.fail("every Redis database 1..15 is taken by another test session")


async def _flush(url: str) -> None:
    client = Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture
async def ami() -> AsyncIterator[FakeAmi]:
    async with FakeAmi() as peer:
        yield peer


@pytest.fixture
async def engine(
    redis_db: str, ami: FakeAmi, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[EngineProcess]:
    env = {
        "IVR_ENGINE_AGENTS_FILE": str(REPO / "config/agents.yaml"),
        "IVR_ENGINE_AGENT_STATE_URL": redis_db,
        "IVR_ENGINE_AMI_URL": f"ami://{ami.username}:{ami.secret}@127.0.0.1:{ami.port}",
    }
    async with engine_process(tmp_path, run_args(sqlite_url, "--workers", "2"), env) as running:
        await running.wait_log(r"engine ready: 2 workers")
        yield running


@contextlib.asynccontextmanager
async def agents(url: str) -> AsyncIterator[RedisAgentStateStore]:
    store = RedisAgentStateStore.from_url(url)
    try:
        yield store
    finally:
        await store.aclose()


async def get(engine: EngineProcess, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{engine.http_port}{path}") as response,
    ):
        assert response.status == 200, await response.text()
        if path == "/metrics":
            return await response.text()
        return await response.json()


async def load_when(engine: EngineProcess, ready: Callable[[Load], bool]) -> Load:
    """``/v1/load`` once ``ready`` holds for it (updates cross processes: a few ms)."""
    load: Load = await get(engine, "/v1/load")
    async with asyncio.timeout(DEADLINE_S):
        while not ready(load):  # the state of another process, read over HTTP
            await asyncio.sleep(0.05)
            load = await get(engine, "/v1/load")
    return load


def sales(load: Load) -> dict[str, Any]:
    row: dict[str, Any] = next(s for s in load["skills"] if s["skill"] == "sales")
    return row


async def one_call_on_each_worker(
    engine: EngineProcess, new_phone: Callable[[], str]
) -> tuple[HeldCall, HeldCall, int]:
    """A call held at its first menu on worker 0 and one on worker 1, and how many others
    were hung up there (they leave the IVR abandoned: ``abandoned`` counts them)."""
    held = await calls_on_each(engine.agi_port, pids(engine), new_phone)
    first, second = (held[pid] for pid in pids(engine))
    for extra in [*first[1:], *second[1:]]:
        extra.hang_up()
    return first[0], second[0], len(first) + len(second) - 2


def counted(routed: int, abandoned: int) -> Callable[[Load], bool]:
    def check(load: Load) -> bool:
        calls = load["counters"]["calls"]
        return bool(calls["routed"] == routed and calls["abandoned"] == abandoned)

    return check


async def test_the_load_counts_every_workers_calls_and_worker_0s_ami_ends_them(
    engine: EngineProcess, ami: FakeAmi, redis_db: str, new_phone: Callable[[], str]
) -> None:
    session = await ami.next_login()  # worker 0's AMI tracker
    async with agents(redis_db) as store:
        await store.set_state("a2", AgentState.AVAILABLE)  # the one sales agent
        on_0, on_1, hung_up = await one_call_on_each_worker(engine, new_phone)
        assert (await on_1.finish("1"))["IVR_AGENT_ID"] == "a2"  # worker 1 rings a2
        assert (await on_0.finish("1"))["IVR_TARGET"] == "queue:sales"  # a2 taken: overflow
        load = await load_when(engine, counted(routed=2, abandoned=hung_up))
        assert load["totals"] == {"waiting": 2, "ringing": 1, "agents": 2,
                                  "longest_wait_s": load["totals"]["longest_wait_s"]}  # fmt: skip
        assert (sales(load)["waiting"], sales(load)["ringing"]) == (2, 1)
        assert load["counters"]["calls"]["routed"] == 2
        assert load["counters"]["route_decisions"] == {"agent": 1, "overflow": 1}
        assert load["agents"]["ringing"] == 1
        metrics = await get(engine, "/metrics")
        assert 'ivr_calls_total{outcome="routed"} 2' in metrics
        assert 'ivr_route_decisions_total{kind="agent"} 1' in metrics
        assert 'ivr_calls_ringing{skill="sales"} 1' in metrics
        assert "ivr_desktop_pops_lost_total 0" in metrics
        for worker in ("0", "1"):
            assert f'ivr_load_updates_dropped_total{{worker="{worker}"}} 0' in metrics

        await answered_by_agent(session, on_1, "a2")  # AMI, in worker 0, for worker 1's call
        # the load view counts the answer at once, the agent after its state is confirmed
        load = await load_when(
            engine, lambda x: x["totals"]["ringing"] == 0 and x["agents"]["on_call"] == 1
        )
        assert load["totals"]["waiting"] == 1
        assert (await store.get("a2")).state is AgentState.ON_CALL
        await session.event("Hangup", ("Uniqueid", on_0.uniqueid), ("Cause", "16"))
        load = await load_when(engine, lambda x: x["totals"]["waiting"] == 0)
        assert load["counters"]["calls"]["routed"] == 2  # ends are not new calls


async def answered_by_agent(session: PeerSession, call: HeldCall, agent_id: str) -> None:
    """What Asterisk reports when the dialplan rings the agent and they answer."""
    uniqueid = call.uniqueid
    await session.event("UserEvent", ("UserEvent", "IvrAgentDial"), ("Uniqueid", uniqueid),
                        ("Agent", agent_id), ("Customer", ""), ("CallerIDNum", ""))  # fmt: skip
    await session.event("DialEnd", ("Uniqueid", uniqueid), ("DestUniqueid", f"{uniqueid}9"),
                        ("DialStatus", "ANSWER"))  # fmt: skip


async def test_worker_0s_restart_keeps_the_load_and_its_successor_ends_the_calls(
    engine: EngineProcess, ami: FakeAmi, new_phone: Callable[[], str]
) -> None:
    await ami.next_login()
    on_0, on_1, hung_up = await one_call_on_each_worker(engine, new_phone)
    for call in (on_0, on_1):  # nobody available: both wait in queue:sales
        assert (await call.finish("1"))["IVR_TARGET"] == "queue:sales"
    before = await load_when(engine, counted(routed=2, abandoned=hung_up))
    assert before["totals"]["waiting"] == 2
    ami.live_channels.update({on_0.uniqueid: "", on_1.uniqueid: ""})  # the new login's list
    worker_0 = pids(engine)[0]
    os.kill(worker_0, signal.SIGKILL)
    await engine.wait_log(rf"worker 0 \(pid {worker_0}\) exited unexpectedly")
    await engine.wait_log(r"worker 0 ready \(pid \d+\)", count=2)

    after = await get(engine, "/v1/load")  # served by the new worker 0
    assert after["totals"]["waiting"] == 2 and sales(after)["waiting"] == 2
    assert after["counters"] == before["counters"]
    assert after["counters"]["calls"]["routed"] == 2
    assert after["totals"]["longest_wait_s"] >= before["totals"]["longest_wait_s"]
    session = await ami.next_login()  # the new worker 0's tracker
    await session.event("Hangup", ("Uniqueid", on_1.uniqueid), ("Cause", "16"))
    await session.event("AgentConnect", ("Uniqueid", on_0.uniqueid))  # a queue member
    await load_when(engine, lambda x: x["totals"]["waiting"] == 0)


async def test_a_call_that_ends_while_worker_0_restarts_leaves_the_load_and_its_agent(
    engine: EngineProcess, ami: FakeAmi, redis_db: str, new_phone: Callable[[], str]
) -> None:
    """Worker 0 holds the AMI connection, so a ``Hangup`` sent while it restarts is lost.
    Its successor's tracker lists Asterisk's channels at login and ends the call that is
    gone, in the supervisor's ledger and for its agent; the call still up stays. Before,
    the call waited in ``/v1/load`` until ``stale_after_s`` (4 h), its agent ringing."""
    await ami.next_login()
    async with agents(redis_db) as store:
        await store.set_state("a2", AgentState.AVAILABLE)  # the one sales agent
        on_0, on_1, hung_up = await one_call_on_each_worker(engine, new_phone)
        assert (await on_1.finish("1"))["IVR_AGENT_ID"] == "a2"  # worker 1 rings a2
        assert (await on_0.finish("1"))["IVR_TARGET"] == "queue:sales"
        await load_when(engine, counted(routed=2, abandoned=hung_up))
        ami.live_channels.update({on_0.uniqueid: "", on_1.uniqueid: ""})
        worker_0 = pids(engine)[0]
        os.kill(worker_0, signal.SIGKILL)
        await engine.wait_log(rf"worker 0 \(pid {worker_0}\) exited unexpectedly")
        del ami.live_channels[on_1.uniqueid]  # the ringing caller hangs up meanwhile
        await engine.wait_log(r"worker 0 ready \(pid \d+\)", count=2)  # serving HTTP again
        await ami.next_login()  # the new worker 0's tracker
        load = await load_when(engine, lambda x: x["totals"]["waiting"] == 1)
        assert load["totals"]["ringing"] == 0 and sales(load)["waiting"] == 1
        assert (await store.get("a2")).state is AgentState.AVAILABLE
        assert load["counters"]["calls"]["routed"] == 2  # ends are not new calls
