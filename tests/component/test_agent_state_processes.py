"""Atomic reservation across two OS processes against the real Redis.

Two Python processes, started together on a signal, each run many calls concurrently
against one pool of agents and print what they got. A claim race (nobody releases) must end
with every agent reserved exactly once; a churn run (reserve, confirm, release, again) must
never show two holders of one agent, counted by an INCR/DECR witness outside the store
(there a call that finds every agent held tries again, as a queued call would).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ivr_engine.agents import AgentState, RedisAgentStateStore
from tests.redis_support import REDIS_URL, delete_prefix

REPO = Path(__file__).resolve().parents[2]
WORKER = r"""
import asyncio, json, random, sys
from redis.asyncio import Redis
from ivr_engine.agents import RedisAgentStateStore, ReservationLost

async def main(url, prefix, tag, mode, calls, pool):
    store = RedisAgentStateStore.from_url(url, prefix=prefix)
    witness = Redis.from_url(url, decode_responses=True)
    rng, gate = random.Random(tag), asyncio.Semaphore(16)
    got, overlaps, lost = [], [], []
    await store.snapshot()  # connected and scripts loaded before the start signal
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def one(i):
        call = f"{tag}-{i}"
        async with gate:
            agent = await store.reserve_first(rng.sample(pool, len(pool)), call, 30)
            while agent is None and mode == "churn":  # a queued call: try again shortly
                await asyncio.sleep(0.001)
                agent = await store.reserve_first(rng.sample(pool, len(pool)), call, 30)
            if agent is None:
                return
            got.append([agent, call])
            if mode == "claim":
                return
            holders = prefix + "holders:" + agent
            if await witness.incr(holders) != 1:
                overlaps.append([agent, call])
            try:
                await store.confirm(agent, call)
                await store.confirm(agent, call)
            except ReservationLost:
                lost.append([agent, call])
            await witness.decr(holders)
            await store.release(agent, call, wrap_up=False)

    await asyncio.gather(*(one(i) for i in range(calls)))
    await store.aclose()
    await witness.aclose()
    print(json.dumps({"got": got, "overlaps": overlaps, "lost": lost}), flush=True)

url, prefix, tag, mode, calls, pool = sys.argv[1:]
asyncio.run(main(url, prefix, tag, mode, int(calls), pool.split(",")))
"""


@pytest.fixture
async def pool() -> AsyncIterator[tuple[RedisAgentStateStore, str, list[str]]]:
    prefix = f"test:{{agents-{uuid.uuid4().hex}}}:"
    store = RedisAgentStateStore.from_url(REDIS_URL, prefix=prefix)
    agents = [f"agent-{i:02d}" for i in range(8)]
    try:
        for agent_id in agents:
            await store.register_agent(agent_id)
            await store.set_state(agent_id, AgentState.AVAILABLE)
        yield store, prefix, agents
    finally:
        await store.aclose()
        await delete_prefix(prefix)


async def run_workers(
    prefix: str, agents: list[str], mode: str, calls: int
) -> list[dict[str, Any]]:
    """Start two worker processes, release them together, and collect what each got."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            REDIS_URL,
            prefix,
            tag,
            mode,
            str(calls),
            ",".join(agents),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for tag in ("p1", "p2")
    ]
    try:
        async with asyncio.timeout(15):
            for proc in procs:
                assert proc.stdout is not None and proc.stderr is not None
                ready = await proc.stdout.readline()
                assert ready == b"ready\n", (ready, await proc.stderr.read())
            outputs = await asyncio.gather(*(proc.communicate(b"go\n") for proc in procs))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    return [json.loads(out) for out, _ in outputs]


async def test_a_claim_race_reserves_every_agent_exactly_once(
    pool: tuple[RedisAgentStateStore, str, list[str]],
) -> None:
    store, prefix, agents = pool
    results = await run_workers(prefix, agents, "claim", calls=100)
    claims = [tuple(claim) for result in results for claim in result["got"]]
    assert sorted(agent for agent, _ in claims) == agents  # each agent once, none twice
    holders = {
        agent.agent_id: agent.reservation.call_id
        for agent in (await store.snapshot()).values()
        if agent.reservation is not None
    }
    assert holders == dict(claims)


async def test_two_processes_never_hold_one_agent_at_once(
    pool: tuple[RedisAgentStateStore, str, list[str]],
) -> None:
    store, prefix, agents = pool
    results = await run_workers(prefix, agents, "churn", calls=250)
    assert [r["overlaps"] for r in results] == [[], []]
    assert [r["lost"] for r in results] == [[], []]
    # Every call waited for an agent (a call that found none all held tried again: before,
    # it gave up, and one process could lose every try of a burst to the other: a flake).
    assert [len(r["got"]) for r in results] == [250, 250]
    final = await store.snapshot()
    assert {(a.state, a.reservation, a.interactions) for a in final.values()} == {
        (AgentState.AVAILABLE, None, ())
    }
