"""A reroute counts the caller's wait from ``IVR_WAIT_START``, not from the reroute.

The first route writes ``IVR_WAIT_START`` (unix seconds) with the agent; when that agent does
not answer, the dialplan runs ``AGI(.../reroute)`` on the same channel, and the engine reads
it back: relaxation stages and overflow targets that the wait has reached apply. A missing,
unreadable, future or absurdly old value counts from now, and the caller still gets an agent
or a target.

Real FastAGI server, the fake Asterisk answering from the channel's variables, the in-process
agent store, the shipped config/routing.yaml (billing needs 4, capped at 2 after 20 s of
waiting; overflow to queue:billing, to callback after 240 s) over a roster of two agents.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ivr_engine.agents import AgentState, InMemoryAgentStateStore
from ivr_engine.contact_center.reroute import reroute_handler
from ivr_engine.contact_center.router import AgentRouter
from ivr_engine.routing import Agent, build_roster, load_routing_config
from ivr_engine.telephony.agi import FastAgiServer
from ivr_engine.timeline import Timeline, open_timeline
from tests.component.fake_asterisk import AsteriskChannel, FakeAsterisk

REPO = Path(__file__).resolve().parents[2]
ROUTING = load_routing_config(REPO / "config/routing.yaml")
ROSTER = build_roster(
    [
        Agent("senior", "Sam Senior", "PJSIP/senior", {"billing": 5}, frozenset({"en"})),
        Agent("junior", "Jo Junior", "PJSIP/junior", {"billing": 2}, frozenset({"en"})),
    ]
)


def now() -> datetime:
    return datetime.now(UTC)


def unix(moment: datetime) -> str:
    return f"{moment.timestamp():.0f}"


@dataclass
class Rig:
    agents: InMemoryAgentStateStore
    server: FastAgiServer

    async def reroute(self, wait_start: str | None) -> dict[str, str]:
        """The senior agent did not answer: the dialplan's reroute, on a channel whose
        ``IVR_WAIT_START`` is ``wait_start`` (None: not set)."""
        variables = {
            "IVR_INTENT": "billing",
            "IVR_TARGET": "queue:billing",
            "IVR_AGENT_ID": "senior",
            "IVR_AGENT_ENDPOINT": "",
        }
        if wait_start is not None:
            variables["IVR_WAIT_START"] = wait_start
        channel = AsteriskChannel(variables)
        fake = FakeAsterisk("127.0.0.1", self.server.port)
        transcript = await fake.call(channel, env=fake.env("reroute"))
        assert not transcript.dropped
        return channel.variables


@pytest.fixture
async def timeline(sqlite_url: str) -> AsyncIterator[Timeline]:
    opened = await open_timeline(sqlite_url, migrate=False)
    yield opened
    await opened.close()


@pytest.fixture
async def rig(timeline: Timeline) -> AsyncIterator[Rig]:
    agents = InMemoryAgentStateStore()
    for agent_id in ("senior", "junior"):
        await agents.register_agent(agent_id)
    router = AgentRouter(roster=ROSTER, config=ROUTING, agents=agents, timeline=timeline.store)
    server = FastAgiServer("127.0.0.1", 0, header_timeout=0.5, command_timeout=2.0)
    server.register("reroute", reroute_handler(router, agents, now))
    await server.start()
    try:
        yield Rig(agents, server)
    finally:
        await server.close(grace=0)
        await router.aclose()
        await agents.aclose()


async def test_a_caller_who_waited_past_a_relaxation_stage_gets_the_relaxed_agent(
    rig: Rig,
) -> None:
    """30 s into the wait the billing level is capped at 2: the junior agent fits. Counted
    from the reroute (the old behaviour) nobody fits and the caller went to the queue."""
    await rig.agents.set_state("junior", AgentState.AVAILABLE)
    heard = await rig.reroute(unix(now() - timedelta(seconds=30)))
    assert (heard["IVR_AGENT_ID"], heard["IVR_AGENT_ENDPOINT"]) == ("junior", "PJSIP/junior")
    assert heard["IVR_TRIED_AGENTS"] == "senior"
    assert (await rig.agents.get("junior")).state is AgentState.RINGING


async def test_a_caller_who_waited_past_an_overflow_stage_goes_to_that_target(
    rig: Rig,
) -> None:
    """Nobody free after 300 s of waiting: billing's overflow has moved on to callback."""
    heard = await rig.reroute(unix(now() - timedelta(seconds=300)))
    assert (heard["IVR_AGENT_ID"], heard["IVR_AGENT_ENDPOINT"]) == ("", "")
    assert heard["IVR_TARGET"] == "callback"


@pytest.mark.parametrize(
    "wait_start",
    [
        None,  # not set (a channel routed before the engine wrote it)
        "",
        "soon",
        "nan",
        "inf",
        "-inf",
        "1e400",
        "-5",
        "0",
        "99999999999999999999",  # past year 9999
        "0x10",
        "in the future",
        "future",
        "past",
    ],
)
async def test_an_unusable_wait_start_counts_from_now_and_still_routes(
    rig: Rig, wait_start: str | None
) -> None:
    """Counted from now, the junior agent (billing 2 < 4) does not fit yet: the caller goes
    to the intent's first overflow target, never a crash or dead air."""
    await rig.agents.set_state("junior", AgentState.AVAILABLE)
    if wait_start == "future":
        wait_start = unix(now() + timedelta(hours=1))
    elif wait_start == "past":
        wait_start = unix(now() - timedelta(days=3))
    heard = await rig.reroute(wait_start)
    assert (heard["IVR_AGENT_ID"], heard["IVR_AGENT_ENDPOINT"]) == ("", "")
    assert heard["IVR_TARGET"] == "queue:billing"
    assert heard["IVR_TRIED_AGENTS"] == "senior"
    assert (await rig.agents.get("junior")).state is AgentState.AVAILABLE


async def test_a_reroute_ended_by_the_stop_gives_its_new_agent_back(rig: Rig) -> None:
    """The stop's grace ends while the reroute writes the new agent to the channel: the
    call is ended as failed (the dialplan overflows, nobody dials that agent), so the agent
    it reserved is released, not left ringing for nobody (shared agent state outlives the
    engine). A hang-up there released it already; a stop did not."""
    await rig.agents.set_state("junior", AgentState.AVAILABLE)
    channel = AsteriskChannel(
        {"IVR_INTENT": "billing", "IVR_TARGET": "queue:billing", "IVR_AGENT_ID": "senior"}
    )
    stuck = asyncio.Event()

    def answer(command: str) -> bytes | None:
        if command.startswith('SET VARIABLE "IVR_AGENT_ENDPOINT"'):
            stuck.set()
            return b""  # Asterisk busy: the engine waits for the reply
        return channel(command)

    fake = FakeAsterisk("127.0.0.1", rig.server.port)
    wait_start = unix(now() - timedelta(seconds=30))  # the junior agent fits
    channel.variables["IVR_WAIT_START"] = wait_start
    call = asyncio.create_task(fake.call(answer, env=fake.env("reroute")))
    async with asyncio.timeout(5):
        await stuck.wait()
    assert (await rig.agents.get("junior")).state is AgentState.RINGING
    await rig.server.close(grace=0)
    transcript = await call
    assert transcript.commands[-1] == "SET VARIABLE IVR_OUTCOME failed"
    assert (await rig.agents.get("junior")).state is AgentState.AVAILABLE
