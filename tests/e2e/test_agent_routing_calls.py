"""Best-skilled routing end to end: SIPp caller -> Asterisk 22 -> engine (FastAGI) -> reserved
agent -> Asterisk dials the agent's PJSIP endpoint, where a SIPp UAS answers (or not).

Agents (config/agents.yaml): a1 "Bea" billing 5 on PJSIP/agent-1 (127.0.0.1:5071), a2 "Gus"
billing 4 on PJSIP/agent-2 (127.0.0.1:5072); billing needs level 4. The engine's AMI tracker
(ami://ivrtest@127.0.0.1:5038) turns DialEnd/Hangup into agent state and timeline events.
Ring timeout in the testbed: 4 s (IVR_RING_TIMEOUT).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ami import AmiClient, Message
from conftest import Testbed
from engine_harness import (
    REPO,
    engine_settings,
    running_engine,
    seed_customer,
    store_of,
    wait_for_call_event,
)
from sipp import SippResult, run_sipp_call
from sipp_agent import Mode, SippAgent

from ivr_engine.agents.model import AgentState
from ivr_engine.app import Engine
from ivr_engine.contact_center.wiring import ContactCenter
from ivr_engine.ports import NewTimelineEvent, TimelineStore

BILLING_SHORTCUT = [("wait", 2500), ("dtmf", "1")]


def contact_center(engine: Engine) -> ContactCenter:
    assert engine.contact_center is not None
    return engine.contact_center


@asynccontextmanager
async def routing_engine(
    tmp_path: Path, agents_file: Path = REPO / "config/agents.yaml"
) -> AsyncIterator[Engine]:
    settings = engine_settings(f"sqlite:///{tmp_path / 'timeline.db'}", tmp_path / "spool")
    settings = settings.model_copy(
        update={
            "agents_file": agents_file,
            "routing_file": REPO / "config/routing.yaml",
            "ami_url": "ami://ivrtest:ivrtest@127.0.0.1:5038",
            "ring_timeout_s": 4.0,
        }
    )
    async with running_engine(settings) as engine:
        assert contact_center(engine).ami is not None
        await contact_center(engine).ami.wait_connected(10)  # type: ignore[union-attr]
        yield engine


@asynccontextmanager
async def agents(a1: Mode = "answer", a2: Mode = "answer") -> AsyncIterator[dict[str, SippAgent]]:
    phones = {"a1": SippAgent(5071, a1), "a2": SippAgent(5072, a2)}
    for phone in phones.values():
        await phone.start()
    try:
        yield phones
    finally:
        for phone in phones.values():
            await phone.stop()


async def make_available(engine: Engine, *agent_ids: str) -> None:
    for agent_id in agent_ids:
        await contact_center(engine).agents.set_state(agent_id, AgentState.AVAILABLE)
        await asyncio.sleep(0.05)  # distinct idle-since times: the first is idle longest


async def billing_caller(engine: Engine, phone: str) -> str:
    seeded = await seed_customer(
        store_of(engine), phone, ["billing"] * 5, fields={"account_number": "40012345"}
    )
    return seeded.customer_id


def user_events(ami: AmiClient, name: str, caller: str) -> list[Message]:
    return [e for e in ami.events if e.get("UserEvent") == name and e.get("CallerIDNum") == caller]


async def agent_events(
    store: TimelineStore, customer_id: str, kinds: set[str], count: int, timeout_s: float = 15
) -> list[tuple[str, str]]:
    """``(event_type, agent_id)`` of the tracker's events, oldest first, once ``count`` exist."""
    deadline = time.monotonic() + timeout_s
    while True:
        page = await store.timeline(customer_id, limit=50)
        found = [
            (e.event_type, str(e.data.get("agent_id")))
            for e in page.events
            if e.event_type in kinds
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return list(reversed(found))
        await asyncio.sleep(0.2)


def assert_ok(result: SippResult) -> None:
    assert result.ok, result.describe()


TRACKED = {"call.agent_answered", "call.agent_missed", "call.agent_ended"}


async def test_billing_expert_gets_the_call_over_an_idle_generalist(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551250001"
    async with routing_engine(tmp_path) as engine, agents() as phones:
        customer_id = await billing_caller(engine, caller)
        await make_available(engine, "a2", "a1")  # a2 has been idle longer
        result = await run_sipp_call(BILLING_SHORTCUT, caller_id=caller, hangup_after_ms=12000)
        tracked = await agent_events(store_of(engine), customer_id, TRACKED, 2)
        state = (await contact_center(engine).agents.get("a1")).state
        pop = contact_center(engine).hub.latest_pop("a1")
        _, ivr_event = await wait_for_call_event(store_of(engine), caller)
        page = await store_of(engine).timeline(customer_id, limit=50)
    assert_ok(result)
    assert [e["Agent"] for e in user_events(ami, "IvrAgentDial", caller)] == ["a1"]
    assert phones["a1"].invites == 1 and phones["a2"].invites == 0
    assert tracked == [("call.agent_answered", "a1"), ("call.agent_ended", "a1")]
    assert state is AgentState.WRAP_UP
    # keyed by the call's key (IVR_CALL_KEY via manager.conf channelvars), as its IVR event
    key = ivr_event.event_id.removeprefix("voice:").removesuffix(":ivr")
    assert "~" in key
    agent_ids = sorted(e.event_id for e in page.events if e.event_type in TRACKED)
    assert agent_ids == [f"voice:{key}:answered:a1", f"voice:{key}:ended:a1"]
    assert pop is not None and pop["intent"] == "billing"
    assert pop["customer"] is not None and pop["customer"]["customer_id"] == customer_id


async def test_agent_not_answering_means_the_next_best_agent(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551250002"
    async with routing_engine(tmp_path) as engine, agents(a1="no_answer") as phones:
        customer_id = await billing_caller(engine, caller)
        await make_available(engine, "a1", "a2")
        result = await run_sipp_call(BILLING_SHORTCUT, caller_id=caller, hangup_after_ms=16000)
        tracked = await agent_events(store_of(engine), customer_id, TRACKED, 3)
        a1_state = (await contact_center(engine).agents.get("a1")).state
    assert_ok(result)
    assert [e["Agent"] for e in user_events(ami, "IvrAgentDial", caller)] == ["a1", "a2"]
    assert phones["a1"].invites == 1 and phones["a2"].invites == 1
    assert tracked == [
        ("call.agent_missed", "a1"),
        ("call.agent_answered", "a2"),
        ("call.agent_ended", "a2"),
    ]
    assert a1_state is AgentState.AVAILABLE  # given back, not wrapped up


async def test_previous_agent_gets_the_returning_caller(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551250003"
    async with routing_engine(tmp_path) as engine, agents() as phones:
        customer_id = await billing_caller(engine, caller)
        await store_of(engine).append_events(
            [
                NewTimelineEvent(
                    "seed:last-agent",
                    customer_id,
                    datetime.now(UTC) - timedelta(days=2),
                    "voice",
                    "call.agent_answered",
                    data={"agent_id": "a2"},
                )
            ]
        )
        await make_available(engine, "a1", "a2")  # a1 is the better billing agent
        result = await run_sipp_call(BILLING_SHORTCUT, caller_id=caller, hangup_after_ms=12000)
        await agent_events(store_of(engine), customer_id, TRACKED, 2)
    assert_ok(result)
    assert [e["Agent"] for e in user_events(ami, "IvrAgentDial", caller)] == ["a2"]
    assert phones["a2"].invites == 1 and phones["a1"].invites == 0


async def test_nobody_available_overflows_to_the_billing_queue(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551250004"
    async with routing_engine(tmp_path) as engine, agents() as phones:
        await billing_caller(engine, caller)  # both agents stay logged out
        result = await run_sipp_call(BILLING_SHORTCUT, caller_id=caller)
        overflow = await ami.wait_for_event(
            "UserEvent", UserEvent="IvrOverflow", CallerIDNum=caller, timeout_s=15
        )
    assert_ok(result)
    assert (overflow["Intent"], overflow["Target"]) == ("billing", "queue:billing")
    assert user_events(ami, "IvrAgentDial", caller) == []
    assert phones["a1"].invites == phones["a2"].invites == 0


async def test_when_no_agent_answers_the_overflow_names_every_agent_tried(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    """IvrOverflow's Tried is a comma list: unquoted, UserEvent kept only the first agent."""
    caller = "+15551250007"
    async with routing_engine(tmp_path) as engine, agents("no_answer", "no_answer") as phones:
        await billing_caller(engine, caller)
        await make_available(engine, "a1", "a2")
        result = await run_sipp_call(BILLING_SHORTCUT, caller_id=caller, timeout_s=40)
        overflow = await ami.wait_for_event(
            "UserEvent", UserEvent="IvrOverflow", CallerIDNum=caller, timeout_s=30
        )
    assert_ok(result)
    assert phones["a1"].invites == 1 and phones["a2"].invites == 1
    assert sorted(overflow["Tried"].split(",")) == ["a1", "a2"], overflow.to_dict()


async def test_two_simultaneous_calls_never_reach_the_same_agent(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    callers = ["+15551250005", "+15551250006"]
    async with routing_engine(tmp_path) as engine, agents() as phones:
        for caller in callers:
            await billing_caller(engine, caller)
        await make_available(engine, "a1", "a2")
        results = await asyncio.gather(
            *(run_sipp_call(BILLING_SHORTCUT, caller_id=c, hangup_after_ms=12000) for c in callers)
        )
    for result in results:
        assert_ok(result)
    dialled = [e["Agent"] for c in callers for e in user_events(ami, "IvrAgentDial", c)]
    assert sorted(dialled) == ["a1", "a2"]
    assert phones["a1"].invites == 1 and phones["a2"].invites == 1
