"""``DeviceStateTracker`` against the fake AMI peer, with both agent state backends.

The fake answers ``DeviceStateList`` and ``QueueStatus`` from ``Phones`` (what Asterisk
would list) and pushes events as Asterisk 22.10 sent them in the testbed. Ordering is
proved by a later event for agent a2: events are handled in order, so once a2 moved, every
event sent before it was handled.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from ivr_engine.agents import (
    AgentState,
    AgentStateStore,
    InMemoryAgentStateStore,
    RedisAgentStateStore,
)
from ivr_engine.contact_center.device_state import PauseNote
from ivr_engine.contact_center.device_tracker import DeviceStateTracker
from ivr_engine.contact_center.pause_notes import InMemoryPauseNotes, PauseNotes, RedisPauseNotes
from ivr_engine.telephony.ami import AmiClient
from tests.component.test_ami_fake_peer import WAIT_S, Action, FakeAmi, PeerSession, make_client
from tests.redis_support import REDIS_URL, delete_prefix, require_redis

S = AgentState
ENDPOINTS = {"a1": "PJSIP/agent-1", "a2": "PJSIP/agent-2"}


@dataclass
class Phones:
    """What the fake Asterisk lists: device states, and queue members (queue, iface, paused)."""

    states: dict[str, str] = field(
        default_factory=lambda: {"PJSIP/agent-1": "NOT_INUSE", "PJSIP/agent-2": "NOT_INUSE"}
    )
    members: list[tuple[str, str, bool]] = field(default_factory=list)
    device_list_loaded: bool = True


def _member(queue: str, interface: str, paused: bool, action_id: str) -> list[tuple[str, str]]:
    return [
        ("Event", "QueueMember"),
        ("ActionID", action_id),
        ("Queue", queue),
        ("Name", interface),
        ("Location", interface),
        ("StateInterface", interface),
        ("Membership", "dynamic"),
        ("Status", "1"),
        ("Paused", "1" if paused else "0"),
        ("PausedReason", "lunch" if paused else ""),
    ]


def serve_lists(peer: FakeAmi, phones: Phones) -> None:
    async def device_state_list(session: PeerSession, action: Action) -> None:
        aid = action.action_id
        if not phones.device_list_loaded:
            message = "Invalid/unknown command: DeviceStateList."
            await session.respond(action, "Error", ("Message", message))
            return
        await session.respond(action, "Success", ("EventList", "start"))
        for device, state in phones.states.items():
            pairs = [("Event", "DeviceStateChange"), ("ActionID", aid)]
            await session.send_pairs([*pairs, ("Device", device), ("State", state)])
        await session.send_pairs(
            [("Event", "DeviceStateListComplete"), ("ActionID", aid), ("EventList", "Complete")]
        )

    async def queue_status(session: PeerSession, action: Action) -> None:
        aid = action.action_id
        await session.respond(action, "Success", ("EventList", "start"))
        for queue, interface, paused in phones.members:
            await session.send_pairs(_member(queue, interface, paused, aid))
        await session.send_pairs(
            [("Event", "QueueStatusComplete"), ("ActionID", aid), ("EventList", "Complete")]
        )

    peer.handlers["devicestatelist"] = device_state_list
    peer.handlers["queuestatus"] = queue_status


@dataclass
class Backend:
    agents: AgentStateStore
    notes: PauseNotes


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield Backend(InMemoryAgentStateStore(), InMemoryPauseNotes())
        return
    prefix = f"test:{{agents-{uuid.uuid4().hex}}}:"
    await require_redis()
    agents = RedisAgentStateStore.from_url(REDIS_URL, prefix=prefix)
    notes = RedisPauseNotes.from_url(REDIS_URL, prefix=prefix)
    try:
        yield Backend(agents, notes)
    finally:
        await agents.aclose()
        await notes.aclose()
        await delete_prefix(prefix)


@dataclass
class Rig:
    peer: FakeAmi
    phones: Phones
    client: AmiClient
    tracker: DeviceStateTracker
    backend: Backend
    session: PeerSession

    @property
    def agents(self) -> AgentStateStore:
        return self.backend.agents

    async def device(self, device: str, state: str) -> None:
        await self.session.event("DeviceStateChange", ("Device", device), ("State", state))

    async def queue_pause(self, paused: bool, reason: str = "", queue: str = "billing") -> None:
        await self.session.event(
            "QueueMemberPause",
            ("Queue", queue),
            ("MemberName", "PJSIP/agent-1"),
            ("Interface", "PJSIP/agent-1"),
            ("StateInterface", "PJSIP/agent-1"),
            ("Status", "1"),
            ("Paused", "1" if paused else "0"),
            ("PausedReason", reason),
        )

    async def state(self, agent_id: str) -> AgentState:
        return (await self.agents.get(agent_id)).state

    async def until_state(self, agent_id: str, state: AgentState) -> None:
        await until(lambda: self.state(agent_id), state)

    async def until_note(self, agent_id: str, reason: str | None) -> PauseNote | None:
        """The agent's pause note once its reason is ``reason`` (None: no note)."""

        async def reason_now() -> str | None:
            note = await self.backend.notes.get(agent_id)
            return None if note is None else note.reason

        await until(reason_now, reason)
        return await self.backend.notes.get(agent_id)

    async def settle(self) -> None:
        """Every event sent so far is handled: a2's phone busy, then free again."""
        await self.device("PJSIP/agent-2", "INUSE")
        await self.until_state("a2", S.PAUSED)
        await self.device("PJSIP/agent-2", "NOT_INUSE")
        await self.until_state("a2", S.AVAILABLE)


async def until(read: Callable[[], Awaitable[object]], expected: object) -> object:
    """Poll ``read`` (every 10 ms, up to the fake's deadline) until it returns ``expected``."""
    last: object = None
    for _ in range(int(WAIT_S / 0.01)):
        if (last := await read()) == expected:
            return last
        await asyncio.sleep(0.01)
    pytest.fail(f"expected {expected!r}, still {last!r}")


@pytest.fixture
async def phones() -> Phones:
    return Phones()


@pytest.fixture
async def rig(backend: Backend, phones: Phones) -> AsyncIterator[Rig]:
    for agent_id in ENDPOINTS:
        await backend.agents.register_agent(agent_id)
        await backend.agents.set_state(agent_id, S.AVAILABLE)
    async with FakeAmi() as peer:
        serve_lists(peer, phones)
        client = make_client(peer)
        tracker = DeviceStateTracker(client, backend.agents, backend.notes, lambda: ENDPOINTS)
        tracker.start()
        await client.start()
        try:
            session = await peer.next_login()
            await until(lambda: _resyncs(tracker), 1)
            yield Rig(peer, phones, client, tracker, backend, session)
        finally:
            await tracker.aclose()
            await client.close()


async def _resyncs(tracker: DeviceStateTracker) -> int:
    return tracker.resyncs


async def test_a_direct_call_makes_the_agent_unroutable_until_the_phone_is_free(rig: Rig) -> None:
    await rig.device("PJSIP/agent-1", "INUSE")
    await rig.until_state("a1", S.PAUSED)
    note = await rig.until_note("a1", "device_busy")
    assert note is not None and note.engine_made
    assert await rig.state("a2") is S.AVAILABLE
    await rig.device("PJSIP/agent-1", "NOT_INUSE")
    await rig.until_state("a1", S.AVAILABLE)
    assert await rig.until_note("a1", None) is None


async def test_an_unregistered_phone_pauses_and_its_return_resumes(rig: Rig) -> None:
    await rig.device("PJSIP/agent-1", "UNAVAILABLE")
    await rig.until_state("a1", S.PAUSED)
    await rig.until_note("a1", "device_unreachable")
    await rig.device("PJSIP/agent-1", "NOT_INUSE")
    await rig.until_state("a1", S.AVAILABLE)


async def test_the_agents_own_pause_is_never_lifted_by_the_phone(rig: Rig) -> None:
    await rig.agents.set_state("a1", S.PAUSED)
    await rig.device("PJSIP/agent-1", "INUSE")
    await rig.device("PJSIP/agent-1", "NOT_INUSE")
    await rig.settle()
    assert await rig.state("a1") is S.PAUSED


async def test_a_pause_chosen_after_the_engines_is_kept(rig: Rig) -> None:
    await rig.device("PJSIP/agent-1", "INUSE")
    await rig.until_state("a1", S.PAUSED)
    await rig.until_note("a1", "device_busy")
    await rig.agents.set_state("a1", S.AVAILABLE)  # the agent insists ...
    await rig.until_state("a1", S.PAUSED)  # ... but the phone is still busy: held again
    await rig.agents.set_state("a1", S.LOGGED_OUT)
    await rig.agents.set_state("a1", S.PAUSED)  # then pauses by choice
    await rig.device("PJSIP/agent-1", "NOT_INUSE")
    await rig.settle()
    assert await rig.state("a1") is S.PAUSED
    assert await rig.backend.notes.get("a1") is None  # the engine's old note was forgotten


async def test_a_call_routed_by_the_engine_is_not_disturbed(rig: Rig) -> None:
    assert await rig.agents.reserve("a1", "call-1", ttl_s=30)
    for state in ("RINGING", "INUSE"):
        await rig.device("PJSIP/agent-1", state)
    await rig.settle()
    assert await rig.state("a1") is S.RESERVED
    await rig.agents.confirm("a1", "call-1")
    await rig.agents.confirm("a1", "call-1")
    await rig.device("PJSIP/agent-1", "ONHOLD")
    await rig.agents.release("a1", "call-1")
    await rig.device("PJSIP/agent-1", "NOT_INUSE")
    await rig.settle()
    assert await rig.state("a1") is S.WRAP_UP


async def test_a_queue_pause_in_asterisk_pauses_and_unpause_resumes(rig: Rig) -> None:
    await rig.queue_pause(True, "lunch")
    await rig.until_state("a1", S.PAUSED)
    note = await rig.until_note("a1", "queue_paused")
    assert note is not None and not note.engine_made
    assert "lunch" in note.detail
    await rig.device("PJSIP/agent-1", "NOT_INUSE")  # the phone does not lift it
    await rig.settle()
    assert await rig.state("a1") is S.PAUSED
    await rig.queue_pause(False)
    await rig.until_state("a1", S.AVAILABLE)


async def test_a_queue_pause_during_a_call_applies_when_the_agent_is_available(rig: Rig) -> None:
    assert await rig.agents.reserve("a1", "call-1", ttl_s=30)
    await rig.agents.confirm("a1", "call-1")
    await rig.agents.confirm("a1", "call-1")
    await rig.queue_pause(True, "break after this call")
    await rig.settle()
    assert await rig.state("a1") is S.ON_CALL
    await rig.agents.release("a1", "call-1", wrap_up=False)  # straight back to available
    await rig.until_state("a1", S.PAUSED)


async def test_reconnect_resyncs_and_gives_back_the_engines_pause(rig: Rig) -> None:
    await rig.device("PJSIP/agent-1", "UNAVAILABLE")
    await rig.until_state("a1", S.PAUSED)
    await rig.peer.stop()  # Asterisk restarts; the phone re-registers meanwhile
    rig.phones.states["PJSIP/agent-1"] = "NOT_INUSE"
    rig.phones.states["PJSIP/agent-2"] = "UNAVAILABLE"
    await rig.peer.start()
    await rig.peer.next_login()
    await rig.until_state("a1", S.AVAILABLE)
    await rig.until_state("a2", S.PAUSED)
    assert rig.tracker.resyncs >= 2


@pytest.mark.parametrize("phones", [Phones({"PJSIP/agent-1": "UNAVAILABLE"})])
async def test_start_up_resync_holds_agents_whose_phone_is_gone(rig: Rig) -> None:
    await rig.until_state("a1", S.PAUSED)
    assert await rig.state("a2") is S.AVAILABLE


@pytest.mark.parametrize(
    "phones",
    [Phones(members=[("billing", "PJSIP/agent-1", True)], device_list_loaded=False)],
)
async def test_without_device_state_list_queue_status_still_resyncs(rig: Rig) -> None:
    await rig.until_state("a1", S.PAUSED)
    await rig.until_note("a1", "queue_paused")


async def test_a_missed_routed_call_does_not_flap_the_agent(rig: Rig) -> None:
    assert await rig.agents.reserve("a1", "call-1", ttl_s=30)
    await rig.agents.confirm("a1", "call-1")
    await rig.device("PJSIP/agent-1", "RINGING")
    await rig.settle()
    await rig.agents.release("a1", "call-1", wrap_up=False)  # no answer: given back
    await rig.settle()
    assert await rig.state("a1") is S.AVAILABLE  # not held for its own call's ringing
    await rig.device("PJSIP/agent-1", "NOT_INUSE")
    await rig.settle()
    assert [agent for agent, _ in rig.tracker.decisions].count("a1") == 0
