"""Calls routed to agents, in-process: real FastAGI socket, real SQLite timeline, the live
agent state (in-process store here; Redis in test_agent_state_*), the sample config/agents.yaml
and config/routing.yaml. The same through real Asterisk + SIPp agents: tests/e2e."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from ivr_engine.agents import RedisAgentStateStore
from ivr_engine.agents.errors import AgentStateUnavailable
from ivr_engine.agents.model import AgentState
from ivr_engine.app import Engine
from ivr_engine.contact_center.router import AgentRouter
from ivr_engine.contact_center.wiring import ContactCenter
from ivr_engine.flows.call_record import CallRecord, IncomingCall
from ivr_engine.ports import Identity, NewTimelineEvent
from ivr_engine.simulate import SimulatedCall, simulate_call
from tests.component.test_ivr_flow import REPO, call, call_event, seed, settings_for, store


def with_agents(sqlite_url: str, tmp_path: Path, **extra: object) -> Engine:
    """An engine with the sample agents and routing (not started)."""
    agents = {"agents_file": REPO / "config/agents.yaml"}
    return Engine(
        settings_for(
            sqlite_url, tmp_path, routing_file=REPO / "config/routing.yaml", **agents, **extra
        )
    )


@pytest.fixture
async def engine(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    running = with_agents(sqlite_url, tmp_path)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def center(engine: Engine) -> ContactCenter:
    assert engine.contact_center is not None
    return engine.contact_center


async def available(engine: Engine, *agent_ids: str) -> None:
    for agent_id in agent_ids:
        await center(engine).agents.set_state(agent_id, AgentState.AVAILABLE)


async def billing_caller(engine: Engine, phone: str) -> None:
    await seed(store(engine), phone, ["billing"] * 5, {"account_number": "40012345"})


async def test_billing_expert_gets_the_billing_call_over_an_idle_generalist(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    await billing_caller(engine, phone)
    await available(engine, "a2")  # the generalist has been idle longer
    await asyncio.sleep(0.01)
    await available(engine, "a1")
    heard = await call(engine, phone, ["1"])  # accepts the billing shortcut
    assert heard.variables["IVR_AGENT_ID"] == "a1"
    assert heard.variables["IVR_AGENT_ENDPOINT"] == "PJSIP/agent-1"
    assert (await center(engine).agents.get("a1")).state is AgentState.RINGING
    event = await call_event(store(engine), phone)
    routing = event.data["routing"]
    assert routing["agent_id"] == "a1" and routing["target"] == "agent:a1"
    # the call's key, for the AMI tracker's agent events (voice:<key>:answered:a1, ...)
    assert event.event_id == f"voice:{heard.variables['IVR_CALL_KEY']}:ivr"
    assert any("billing proficiency 5" in reason for reason in routing["reasons"])
    await asyncio.sleep(0.2)  # the pop runs in the background
    pop = center(engine).hub.latest_pop("a1")
    assert pop is not None and pop["intent"] == "billing"
    assert pop["customer"] is not None and pop["customer"]["name"] == "Ada"
    assert any("billing proficiency 5" in reason for reason in pop["routing_reasons"])
    assert len(pop["recent_contacts"]) >= 5


async def test_busy_expert_means_the_next_best_and_nobody_means_overflow(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    first, second, third = new_phone(), new_phone(), new_phone()
    for phone in (first, second, third):
        await billing_caller(engine, phone)
    await available(engine, "a1", "a2")
    one = await call(engine, first, ["1"])
    two = await call(engine, second, ["1"])
    three = await call(engine, third, ["1"])
    assert one.variables["IVR_AGENT_ID"] == "a1"
    assert two.variables["IVR_AGENT_ID"] == "a2"
    assert three.variables["IVR_AGENT_ID"] == ""
    assert three.variables["IVR_AGENT_ENDPOINT"] == ""
    assert three.variables["IVR_TARGET"] == "queue:billing"


async def test_simultaneous_calls_never_get_the_same_agent(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phones = [new_phone() for _ in range(6)]
    for phone in phones:
        await billing_caller(engine, phone)
    await available(engine, "a1", "a2")
    heard = await asyncio.gather(*(call(engine, phone, ["1"]) for phone in phones))
    agents = [h.variables["IVR_AGENT_ID"] for h in heard]
    assert sorted(a for a in agents if a) == ["a1", "a2"]
    assert agents.count("") == 4


async def test_ring_no_answer_reroutes_to_the_next_agent(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    await billing_caller(engine, phone)
    await available(engine, "a1", "a2")
    first = await call(engine, phone, ["1"])
    assert first.variables["IVR_AGENT_ID"] == "a1"
    # Asterisk: Dial(PJSIP/agent-1) got no answer -> AGI(agi://.../reroute) on that channel.
    assert engine.agi is not None
    variables = dict(first.variables)
    rerouted = await simulate_call(
        SimulatedCall(phone, [], variables=variables, uniqueid=first.uniqueid),
        "127.0.0.1",
        engine.agi.port,
        script="reroute",
    )
    assert rerouted.variables["IVR_AGENT_ID"] == "a2"
    assert rerouted.variables["IVR_TRIED_AGENTS"] == "a1"
    assert (await center(engine).agents.get("a1")).state is AgentState.AVAILABLE
    again = await simulate_call(
        SimulatedCall(phone, [], variables=dict(rerouted.variables), uniqueid=first.uniqueid),
        "127.0.0.1",
        engine.agi.port,
        script="reroute",
    )
    assert again.variables["IVR_TRIED_AGENTS"] == "a1,a2"
    assert again.variables["IVR_AGENT_ENDPOINT"] == ""  # nobody left: overflow
    assert again.variables["IVR_TARGET"] == "queue:billing"


async def test_routing_to_agents_without_ami_url_warns_at_start(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = with_agents(sqlite_url, tmp_path)
    with caplog.at_level(logging.WARNING, logger="ivr_engine.contact_center.wiring"):
        await engine.start()
        await engine.stop()
    (warning,) = [r.getMessage() for r in caplog.records if "ami_url is not set" in r.getMessage()]
    assert "offered calls again 50 s after the ring" in warning


async def test_unreachable_agent_store_refuses_start_up(sqlite_url: str, tmp_path: Path) -> None:
    down = Engine(
        settings_for(
            sqlite_url,
            tmp_path,
            agents_file=REPO / "config/agents.yaml",
            agent_state_url="redis://127.0.0.1:1/0",
        )
    )
    with pytest.raises(AgentStateUnavailable):
        await down.start()  # agents are registered at start-up: refused loudly
    await down.stop()


async def test_agent_store_down_mid_call_overflows_to_the_intent_queue(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """The router on a Redis nobody listens on: the caller goes to the queue at once."""
    live = center(engine).router
    unreachable = RedisAgentStateStore.from_url("redis://127.0.0.1:1/0")
    router = AgentRouter(
        roster=live._roster,
        config=live._config,
        agents=unreachable,
        timeline=store(engine),
    )
    record = CallRecord(
        call=IncomingCall("c-1", "+15550001111", "PJSIP/x", "main", datetime.now(UTC)),
        intent="billing",
        target="queue:billing",
    )
    try:
        result = await router.route(record, {})
    finally:
        await unreachable.aclose()
    assert (result.agent_id, result.target) == (None, "queue:billing")
    assert "agent state unavailable" in result.reasons[0]


async def test_engine_serves_load_metrics_and_timeline_page(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    phone = new_phone()
    await billing_caller(engine, phone)
    await available(engine, "a1")
    await call(engine, phone, ["1"])
    base = f"http://127.0.0.1:{engine.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/v1/load") as response:
            load = await response.json()
        async with http.get(f"{base}/metrics") as response:
            metrics = await response.text()
        async with http.get(f"{base}/timeline/") as response:
            page = (response.status, response.headers.get("Content-Security-Policy", ""))
    billing = next(s for s in load["skills"] if s["skill"] == "billing")
    assert billing["ringing"] == 1  # rung, not answered yet
    assert load["agents"]["ringing"] == 1
    assert 'ivr_route_decisions_total{kind="agent"} 1' in metrics
    assert 'ivr_calls_total{outcome="routed"} 1' in metrics
    assert "ivr_desktop_pops_lost_total 0" in metrics  # one process: nothing to relay
    assert page[0] == 200 and "default-src 'self'" in page[1]


async def test_last_agent_affinity_reads_the_bridge_form_of_an_answer(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """With the call-event bridge recording answers (and the tracker's own events off), the
    newest ``call.answered_by_agent`` names the caller's last agent, as the tracker's
    ``call.agent_answered`` does; an answer without a known agent is skipped."""
    customer = await store(engine).create_customer("Ada", [Identity("phone", new_phone())])
    now = datetime.now(UTC)
    await store(engine).append_events(
        [
            NewTimelineEvent(f"bridge:{customer.customer_id}:{n}", customer.customer_id,
                             now - timedelta(minutes=minutes), "voice", kind, data=data)
            for n, (minutes, kind, data) in enumerate([
                (30, "call.agent_answered", {"agent_id": "a1", "ring_ms": 900}),
                (20, "call.answered_by_agent", {"agent_id": "a2", "via": "dial"}),
                (10, "call.answered_by_agent", {"agent_id": None, "via": "bridge"}),
            ])
        ]
    )  # fmt: skip
    last = await center(engine).router._last_agent(customer.customer_id, None)
    assert last is not None and last.agent_id == "a2"
    assert last.helped_at == now - timedelta(minutes=20)


async def test_last_agent_is_the_newest_answer_even_when_written_late(
    engine: Engine, new_phone: Callable[[], str]
) -> None:
    """A lagging bridge (or a spool replay) stores an older call's answer after the newer
    one: the caller's last agent is the one who answered most recently, not the one whose
    event was written last."""
    customer = await store(engine).create_customer("Ada", [Identity("phone", new_phone())])
    now = datetime.now(UTC)
    for n, (minutes, agent) in enumerate([(10, "a2"), (40, "a1")]):  # a1's, older, lands last
        answer = NewTimelineEvent(
            f"late:{customer.customer_id}:{n}", customer.customer_id,
            now - timedelta(minutes=minutes), "voice", "call.answered_by_agent",
            data={"agent_id": agent, "via": "dial"},
        )  # fmt: skip
        await store(engine).append_events([answer])
    last = await center(engine).router._last_agent(customer.customer_id, None)
    assert last is not None and last.agent_id == "a2"


async def test_the_dialplan_rings_each_agent_for_ring_timeout_s(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    """IVR_RING_TIMEOUT comes from the engine's ring_timeout_s (whole seconds, rounded up)
    with every agent it hands over, first route and reroute; an overflow sets none."""
    running = with_agents(sqlite_url, tmp_path, ring_timeout_s=7.5)
    await running.start()
    try:
        phone, other = new_phone(), new_phone()
        await billing_caller(running, phone)
        await billing_caller(running, other)
        await available(running, "a1")
        first = await call(running, phone, ["1"])
        assert first.variables["IVR_AGENT_ID"] == "a1"
        assert first.variables["IVR_RING_TIMEOUT"] == "8"
        overflow = await call(running, other, ["1"])  # a1 is ringing for the first call
        assert overflow.variables["IVR_AGENT_ID"] == ""
        assert "IVR_RING_TIMEOUT" not in overflow.variables
        await available(running, "a2")
        assert running.agi is not None
        rerouted = await simulate_call(
            SimulatedCall(phone, [], variables={"IVR_INTENT": "billing", "IVR_AGENT_ID": "a1"},
                          uniqueid=first.uniqueid),
            "127.0.0.1",
            running.agi.port,
            script="reroute",
        )  # fmt: skip
        assert rerouted.variables["IVR_AGENT_ID"] == "a2"
        assert rerouted.variables["IVR_RING_TIMEOUT"] == "8"
    finally:
        await running.stop()
