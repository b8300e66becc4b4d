"""The agent reroute over FreeSWITCH's outbound Event Socket, against the protocol-exact fake.

The sample dialplan (dialplans/freeswitch/ivr-engine.xml, ivr-agent) bridges the caller to
``IVR_AGENT_ENDPOINT``; when the bridge fails it clears the endpoint, sets
``IVR_SCRIPT=reroute`` and runs ``socket`` again on the same channel. Here the fake dials the
engine a second time with the channel's variables as the first session left them.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ivr_engine.agents.model import AgentState
from ivr_engine.app import Engine
from ivr_engine.contact_center.reroute import REROUTE_SCRIPT
from ivr_engine.telephony.esl import EslOutboundServer
from ivr_engine.telephony.esl.outbound import SCRIPT_VARIABLE
from tests.component.fake_freeswitch import FsCall
from tests.component.test_agent_routing_flow import available, billing_caller, center
from tests.component.test_esl_outbound_calls import REPO, esl_settings, fs_call, running_engine


@pytest.fixture
async def engine(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    config = {
        "agents_file": REPO / "config/agents.yaml",
        "routing_file": REPO / "config/routing.yaml",
    }
    async with running_engine(esl_settings(sqlite_url, tmp_path, **config)) as running:
        yield running


def after_no_answer(first: FsCall, *, hangup_after_connect: bool = False) -> FsCall:
    """What the dialplan's ivr-agent hands the engine after the bridge failed."""
    variables = {**first.variables, "IVR_AGENT_ENDPOINT": "", "IVR_SCRIPT": "reroute"}
    return FsCall(
        first.caller_id,
        [],
        uuid=first.uuid,
        variables=variables,
        hangup_after_connect=hangup_after_connect,
    )


async def state(engine: Engine, agent_id: str) -> AgentState:
    return (await center(engine).agents.get(agent_id)).state


async def routed_to_a1(engine: Engine, phone: str) -> FsCall:
    await billing_caller(engine, phone)
    await available(engine, "a1", "a2")
    first = await fs_call(engine, FsCall(phone, ["1"]))
    assert first.variables["IVR_AGENT_ID"] == "a1"
    assert await state(engine, "a1") is AgentState.RINGING
    return first


async def test_no_answer_from_a_reroutes_to_b_and_gives_a_back(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    first = await routed_to_a1(engine, new_phone())
    rerouted = await fs_call(engine, after_no_answer(first))
    assert rerouted.commands == ["connect", "myevents", "resume", "sendmsg"]
    assert [app for app, _ in rerouted.apps] == ["multiset"]  # one application, no menu
    assert rerouted.variables["IVR_AGENT_ID"] == "a2"
    assert rerouted.variables["IVR_AGENT_ENDPOINT"] == "PJSIP/agent-2"
    assert rerouted.variables["IVR_TRIED_AGENTS"] == "a1"
    assert await state(engine, "a1") is AgentState.AVAILABLE
    assert await state(engine, "a2") is AgentState.RINGING
    assert rerouted.dialplan_continues  # transfer to ivr-agent


async def test_every_agent_tried_overflows_to_the_target(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    first = await routed_to_a1(engine, new_phone())
    second = await fs_call(engine, after_no_answer(first))
    third = await fs_call(engine, after_no_answer(second))
    assert third.variables["IVR_TRIED_AGENTS"] == "a1,a2"
    assert third.variables["IVR_AGENT_ID"] == ""
    assert third.variables["IVR_AGENT_ENDPOINT"] == ""  # ivr-agent-none: the overflow
    assert third.variables["IVR_TARGET"] == "queue:billing"
    assert await state(engine, "a2") is AgentState.AVAILABLE


async def test_the_reroute_counts_the_wait_from_ivr_wait_start(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """The first session wrote IVR_WAIT_START with the agent; the reroute reads it back
    from the ``connect`` reply: 300 s into the wait, billing's overflow is callback."""
    first = await routed_to_a1(engine, new_phone())
    written = float(first.variables["IVR_WAIT_START"])
    assert abs(written - time.time()) < 5
    await center(engine).agents.set_state("a2", AgentState.PAUSED)
    later = after_no_answer(first)
    later.variables["IVR_WAIT_START"] = f"{written - 300:.0f}"  # the caller waited 5 minutes
    rerouted = await fs_call(engine, later)
    assert rerouted.variables["IVR_AGENT_ENDPOINT"] == ""
    assert rerouted.variables["IVR_TARGET"] == "callback"
    assert rerouted.variables["IVR_WAIT_START"] == later.variables["IVR_WAIT_START"]  # kept
    assert await state(engine, "a1") is AgentState.AVAILABLE


async def test_hangup_during_reroute_gives_back_both_agents(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    first = await routed_to_a1(engine, new_phone())
    gone = await fs_call(engine, after_no_answer(first, hangup_after_connect=True))
    assert gone.commands == ["connect", "myevents", "resume"]  # then the caller left
    assert gone.unanswered == ["sendmsg"]  # after FreeSWITCH's goodbye: never run
    assert gone.apps == []
    assert gone.variables["IVR_AGENT_ID"] == "a1"  # nothing changed on the channel
    assert await state(engine, "a1") is AgentState.AVAILABLE
    assert await state(engine, "a2") is AgentState.AVAILABLE  # reserved, then given back
    assert gone.switch_closed and gone.server_closed  # the engine let go too
    assert engine.esl is not None and engine.esl.active_calls == 0


async def test_unknown_script_closes_the_socket_untouched(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    call = await fs_call(engine, FsCall(new_phone(), ["1"], variables={"IVR_SCRIPT": "nope"}))
    assert call.commands == ["connect", "myevents", "resume"]
    assert call.dialplan_continues and "IVR_OUTCOME" not in call.variables


async def test_a_script_name_is_registered_once() -> None:
    async def handler(*_: object) -> None:
        return None

    server = EslOutboundServer(handler)
    server.register("reroute", handler)
    with pytest.raises(ValueError, match="already registered"):
        server.register("reroute", handler)
    with pytest.raises(ValueError, match="invalid"):
        server.register("", handler)


def actions(extension: ET.Element) -> list[tuple[str, str]]:
    return [(a.get("application", ""), a.get("data", "")) for a in extension.iter("action")]


def test_sample_dialplan_reroutes_through_the_engine_script_after_a_failed_bridge() -> None:
    root = ET.parse(REPO / "dialplans/freeswitch/ivr-engine.xml").getroot()
    extensions = {e.get("name"): e for e in root.iter("extension")}
    agent = actions(extensions["ivr-agent"])
    after = agent[[app for app, _ in agent].index("bridge") + 1 :]
    steps = [(app, data) for app, data in after if app != "log"]
    assert steps == [
        ("unset", "IVR_AGENT_ENDPOINT"),
        ("set", f"{SCRIPT_VARIABLE}={REROUTE_SCRIPT}"),
        ("set", "socket_resume=true"),
        ("socket", "$${ivr_engine_esl} async"),
        ("unset", SCRIPT_VARIABLE),
        ("transfer", "ivr-agent XML ivr-engine"),
    ]
    entry = actions(extensions["ivr-entry"])
    assert ("unset", SCRIPT_VARIABLE) in entry  # a later pass through the IVR runs the menu
    assert entry.index(("unset", SCRIPT_VARIABLE)) < [a for a, _ in entry].index("socket")
