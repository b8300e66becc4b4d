"""Asterisk's own device and queue-member state drives the engine's agent state (real
Asterisk 22, SIPp agent phones), and the router follows it.

* ``QueueAdd`` of PJSIP/agent-1 to the billing queue paused (``Reason: lunch``) →
  ``QueueMemberAdded Paused: 1`` → agent a1 paused (the agent's own pause); a billing caller
  then gets a2. ``QueuePause Paused: false`` → a1 available again.
* A call to agent-1 the engine did not route (``Originate`` answered by the SIPp phone) →
  ``DeviceStateChange INUSE`` → a1 held by the engine; a billing caller meanwhile overflows
  (a2 logged out); when the call ends (``NOT_INUSE``) the engine gives a1 back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import aiohttp
import yaml
from ami import AmiClient
from conftest import Testbed
from engine_harness import REPO
from sipp import run_sipp_call
from test_agent_routing_calls import (
    BILLING_SHORTCUT,
    agents,
    assert_ok,
    billing_caller,
    contact_center,
    make_available,
    routing_engine,
    user_events,
)

from ivr_engine.agents.model import AgentState
from ivr_engine.app import Engine
from ivr_engine.contact_center.device_tracker import DeviceStateTracker

S = AgentState
WAIT_S = 10.0


def device_tracker(engine: Engine) -> DeviceStateTracker:
    tracker = contact_center(engine).device_tracker
    assert tracker is not None, "the engine started no device state tracker"
    return tracker


async def until_state(engine: Engine, agent_id: str, state: AgentState) -> None:
    """Poll the engine's agent state (every 50 ms, up to ``WAIT_S``)."""
    last = None
    for _ in range(int(WAIT_S / 0.05)):
        if (last := (await contact_center(engine).agents.get(agent_id)).state) is state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{agent_id}: expected {state}, still {last}")


async def agent_over_http(engine: Engine, agent_id: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{engine.http_port}/v1/agents/{agent_id}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def test_a_queue_pause_in_asterisk_pauses_the_agent_and_routing_skips_them(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551260001"
    async with routing_engine(tmp_path) as engine, agents() as phones:
        await billing_caller(engine, caller)
        await make_available(engine, "a2", "a1")  # without the pause, a1 (billing 5) wins
        added = await ami.action(
            "QueueAdd", Queue="billing", Interface="PJSIP/agent-1", Paused="true", Reason="lunch"
        )
        assert added["Response"] == "Success", added
        try:
            await until_state(engine, "a1", S.PAUSED)
            note = await device_tracker(engine).notes.get("a1")
            assert note is not None and note.reason == "queue_paused" and not note.engine_made
            assert "lunch" in note.detail
            seen = await agent_over_http(engine, "a1")  # supervisors see why, over the API
            assert seen["state"] == "paused" and seen["pause"] is not None, seen
            assert seen["pause"]["reason"] == "queue_paused" and not seen["pause"]["by_engine"]
            assert "lunch" in seen["pause"]["detail"]
            result = await run_sipp_call(BILLING_SHORTCUT, caller_id=caller, hangup_after_ms=9000)
            assert_ok(result)
            await ami.action("QueuePause", Interface="PJSIP/agent-1", Paused="false")
            await until_state(engine, "a1", S.AVAILABLE)
        finally:
            await ami.action("QueueRemove", Queue="billing", Interface="PJSIP/agent-1")
    assert [e["Agent"] for e in user_events(ami, "IvrAgentDial", caller)] == ["a2"]
    assert phones["a1"].invites == 0 and phones["a2"].invites == 1
    paused = ami.find(lambda e: e.get("Event") == "QueueMemberAdded")
    assert paused is not None and (paused["Paused"], paused["PausedReason"]) == ("1", "lunch")


async def test_a_direct_call_on_the_agents_phone_holds_them_until_it_ends(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    caller = "+15551260002"
    async with routing_engine(tmp_path) as engine, agents() as phones:
        await billing_caller(engine, caller)
        await make_available(engine, "a1")  # a2 stays logged out
        originated = await ami.action(
            "Originate",
            Channel="PJSIP/agent-1",
            Application="Wait",
            Data="8",
            Async="true",
            Timeout="5000",
        )
        assert originated["Response"] == "Success", originated
        await until_state(engine, "a1", S.PAUSED)
        note = await device_tracker(engine).notes.get("a1")
        assert note is not None and note.reason == "device_busy" and note.engine_made
        result = await run_sipp_call(BILLING_SHORTCUT, caller_id=caller)
        overflow = await ami.wait_for_event(
            "UserEvent", UserEvent="IvrOverflow", CallerIDNum=caller, timeout_s=15
        )
        await until_state(engine, "a1", S.AVAILABLE)  # Wait(8) ended: NOT_INUSE
        assert await device_tracker(engine).notes.get("a1") is None
    assert_ok(result)
    assert overflow["Target"] == "queue:billing"
    assert user_events(ami, "IvrAgentDial", caller) == []
    assert phones["a1"].invites == 1  # the direct call only
    states = [
        e["State"]
        for e in ami.events
        if e.get("Event") == "DeviceStateChange" and e.get("Device") == "PJSIP/agent-1"
    ]
    assert "INUSE" in states and states[-1] == "NOT_INUSE"


class OptionsResponder(asyncio.DatagramProtocol):
    """A phone that is reachable and nothing else: answers SIP OPTIONS with 200 OK (the
    request's Via, From, To, Call-ID and CSeq copied back, RFC 3261 section 11)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode("utf-8", "replace")
        if not text.startswith("OPTIONS "):
            return
        copied = [
            line
            for line in text.split("\r\n")
            if line.split(":", 1)[0].strip().lower() in {"via", "from", "to", "call-id", "cseq"}
        ]
        reply = "\r\n".join(["SIP/2.0 200 OK", *copied, "Content-Length: 0", "", ""])
        assert self.transport is not None
        self.transport.sendto(reply.encode(), addr)
        self.answered += 1


async def test_an_unreachable_phone_pauses_the_agent_until_it_answers_again(
    asterisk: Testbed, ami: AmiClient, tmp_path: Path
) -> None:
    """agent-3 is qualified every second and nothing answers: Asterisk reports the device
    UNAVAILABLE and the engine pauses a3 (device_unreachable, its own pause). Once the phone
    answers OPTIONS, Asterisk reports NOT_INUSE and the engine makes a3 available again."""
    roster = yaml.safe_load((REPO / "config/agents.yaml").read_text())
    a3 = {**roster["agents"][0], "agent_id": "a3", "name": "Una Reachable"}
    roster["agents"].append({**a3, "sip_endpoint": "PJSIP/agent-3"})
    agents_file = tmp_path / "agents.yaml"
    agents_file.write_text(yaml.safe_dump(roster))
    async with routing_engine(tmp_path, agents_file=agents_file) as engine:
        await make_available(engine, "a3")
        await until_state(engine, "a3", S.PAUSED)
        note = await device_tracker(engine).notes.get("a3")
        assert note is not None and note.reason == "device_unreachable" and note.engine_made
        loop = asyncio.get_running_loop()
        transport, phone = await loop.create_datagram_endpoint(
            OptionsResponder, local_addr=("127.0.0.1", 5073)
        )
        try:
            await until_state(engine, "a3", S.AVAILABLE)
            assert await device_tracker(engine).notes.get("a3") is None
        finally:
            transport.close()
    assert phone.answered >= 1
    states = [
        e["State"]
        for e in ami.events
        if e.get("Event") == "DeviceStateChange" and e.get("Device") == "PJSIP/agent-3"
    ]
    assert "NOT_INUSE" in states, states
