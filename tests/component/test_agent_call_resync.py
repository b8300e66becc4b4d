"""``AgentCallTracker`` resyncs with Asterisk's channel list after every AMI login.

Against the fake AMI peer (``live_channels``: what ``CoreShowChannels`` lists), a real
agent store, load tracker and SQLite timeline. Asterisk "going away" is the fake stopping
(every connection dropped) and listening again on the same port: events sent meanwhile
are lost, as in a real outage, and the channel list is all the tracker can learn from.
Before the resync, every call ended during the gap stayed waiting/ringing in the load view
(until ``stale_after_s``, 4 h) and its agent stayed on the call or ringing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from ivr_engine.agents.memory import InMemoryAgentStateStore
from ivr_engine.agents.model import AgentState
from ivr_engine.contact_center.agent_call_timeline import AGENT_ENDED
from ivr_engine.contact_center.load_tracker import LoadTracker
from ivr_engine.contact_center.load_view import LoadView
from ivr_engine.contact_center.router import AGENT_ANSWERED
from ivr_engine.contact_center.tracker import AgentCallTracker
from ivr_engine.ports import Identity
from ivr_engine.telephony.ami import AmiClient
from ivr_engine.timeline import Timeline, open_timeline
from tests.component.test_ami_fake_peer import (
    WAIT_S,
    Action,
    FakeAmi,
    PeerSession,
    listed_channel,
    make_client,
)

S = AgentState
_ids = itertools.count(1)


def new_call() -> str:
    """A caller channel's Uniqueid, as Asterisk makes them (the engine's call id)."""
    return f"1733000000.{next(_ids)}"


def now() -> datetime:
    return datetime.now(UTC)


async def until(read: Callable[[], object], expected: object) -> None:
    """Poll ``read`` (sync or async) every 10 ms, up to the fake's deadline."""
    last: object = None
    for _ in range(int(WAIT_S / 0.01)):
        last = read()
        if isinstance(last, Awaitable):
            last = await last
        if last == expected:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"expected {expected!r}, still {last!r}")


async def answer_list(session: PeerSession, action: Action, listed: dict[str, str]) -> None:
    """``CoreShowChannels`` answered with ``listed`` (Uniqueid -> caller), as Asterisk does."""
    aid = action.action_id
    await session.respond(action, "Success", ("EventList", "start"))
    for uniqueid, caller in listed.items():
        await session.send_pairs(listed_channel(uniqueid, caller, aid))
    complete = [("Event", "CoreShowChannelsComplete"), ("ActionID", aid)]
    await session.send_pairs([*complete, ("EventList", "Complete")])


@dataclass
class Rig:
    peer: FakeAmi
    client: AmiClient
    agents: InMemoryAgentStateStore
    load: LoadTracker
    timeline: Timeline
    tracker: AgentCallTracker
    session: PeerSession

    def waiting(self) -> set[str]:
        return {call.call_id for call in self.load.calls()}

    async def state(self, agent_id: str) -> AgentState:
        return (await self.agents.get(agent_id)).state

    async def route(self, call_id: str, agent_id: str | None, caller: str = "") -> None:
        """What the router does (reserve → ringing, load view), and the call is live."""
        self.peer.live_channels[call_id] = caller
        self.load.call_routed(call_id, "billing", now(), agent_id)
        if agent_id is not None:
            assert await self.agents.reserve(agent_id, call_id, 30)
            assert await self.agents.confirm(agent_id, call_id) is S.RINGING

    async def ring(self, call_id: str, agent_id: str, customer_id: str = "") -> None:
        """The dialplan's ``IvrAgentDial`` user event, handled."""
        await self.session.event("UserEvent", ("UserEvent", "IvrAgentDial"),
                                 ("Uniqueid", call_id), ("Agent", agent_id),
                                 ("Customer", customer_id), ("CallerIDNum", ""))  # fmt: skip
        await self.settle()

    async def answer(self, call_id: str, agent_id: str) -> None:
        await self.session.event("DialEnd", ("Uniqueid", call_id), ("DialStatus", "ANSWER"),
                                 ("DestUniqueid", f"{call_id}9"))  # fmt: skip
        await until(lambda: self.state(agent_id), S.ON_CALL)
        self.peer.live_channels[f"{call_id}9"] = ""  # the agent's own channel

    async def settle(self) -> None:
        """Until every event sent so far is handled: they are handled in order, and the
        ``Hangup`` of a marker call in the load view, sent last, takes it out."""
        marker = new_call()
        self.load.call_waiting(marker, "billing", now())
        await self.session.event("Hangup", ("Uniqueid", marker), ("Cause", "16"))
        await until(lambda: marker in self.waiting(), False)

    async def outage(self, *, then: Callable[[], Awaitable[None]] | None = None) -> None:
        """Asterisk goes away (every event sent meanwhile is lost); ``then`` happens during
        the gap; AMI comes back and the tracker's resync of the new login completes."""
        resyncs = self.tracker.resyncs
        await self.peer.stop()
        if then is not None:
            await then()
        await self.peer.start()
        self.session = await self.peer.next_login()
        await until(lambda: self.tracker.resyncs, resyncs + 1)

    async def ended_on_timeline(self, customer_id: str) -> list[dict[str, object]]:
        page = await self.timeline.store.timeline(customer_id)
        return [dict(e.data) for e in page.events if e.event_type == AGENT_ENDED]


@pytest.fixture
async def rig(sqlite_url: str) -> AsyncIterator[Rig]:
    agents = InMemoryAgentStateStore()
    for agent_id in ("a1", "a2", "a3"):
        await agents.register_agent(agent_id)
        await agents.set_state(agent_id, S.AVAILABLE)
    load = LoadTracker(LoadView.empty())
    timeline = await open_timeline(sqlite_url, migrate=False)
    async with FakeAmi() as peer:
        client = make_client(peer)
        tracker = AgentCallTracker(client, agents, timeline.store, load=load, resync_timeout_s=1)
        tracker.start()
        await client.start()
        try:
            session = await peer.next_login()
            await until(lambda: tracker.resyncs, 1)  # the first login's (nothing to do)
            yield Rig(peer, client, agents, load, timeline, tracker, session)
        finally:
            await tracker.aclose()
            await client.close()
            await timeline.close()


async def test_calls_that_ended_while_ami_was_down_leave_the_load_view_and_their_agents(
    rig: Rig,
) -> None:
    talking, ringing, queued, still_up = (new_call() for _ in range(4))
    await rig.route(talking, "a1")
    await rig.ring(talking, "a1")
    await rig.answer(talking, "a1")
    await rig.route(ringing, "a2")
    await rig.ring(ringing, "a2")
    await rig.route(queued, None)  # overflow: waits in the Asterisk queue
    await rig.route(still_up, "a3")
    await rig.ring(still_up, "a3")
    assert rig.waiting() == {ringing, queued, still_up}  # the answered one waits no more

    async def hang_up_three() -> None:  # their Hangup events are never seen
        for call_id in (talking, f"{talking}9", ringing, queued):
            del rig.peer.live_channels[call_id]

    await rig.outage(then=hang_up_three)

    assert rig.waiting() == {still_up}
    assert await rig.state("a1") is S.WRAP_UP  # as after a hang-up
    assert await rig.state("a2") is S.AVAILABLE  # the ringing reservation given back
    assert await rig.state("a3") is S.RINGING  # the call still up is kept
    assert rig.tracker.resync_ended == 3
    # The call that is still up goes on being tracked; the ended ones are forgotten.
    await rig.answer(still_up, "a3")
    await rig.agents.set_state("a1", S.AVAILABLE)
    await rig.session.event("Hangup", ("Uniqueid", talking), ("Cause", "16"))  # late, stale
    await rig.session.event("Hangup", ("Uniqueid", still_up), ("Cause", "16"))
    await until(lambda: rig.state("a3"), S.WRAP_UP)
    assert await rig.state("a1") is S.AVAILABLE


async def test_a_call_ended_by_the_resync_writes_nothing_on_the_timeline(
    rig: Rig, new_phone: Callable[[], str]
) -> None:
    caller = new_phone()
    customer = await rig.timeline.store.create_customer("Ada", [Identity("phone", caller)])
    call = new_call()
    await rig.route(call, "a1", caller)
    await rig.ring(call, "a1", customer.customer_id)
    await rig.answer(call, "a1")

    async def hang_up() -> None:
        rig.peer.live_channels.clear()

    await rig.outage(then=hang_up)
    assert await rig.state("a1") is S.WRAP_UP
    page = await rig.timeline.store.timeline(customer.customer_id)
    assert [e.event_type for e in page.events] == [AGENT_ANSWERED]  # no made-up end


async def test_an_agent_whose_leg_hung_up_while_ami_was_down_is_off_the_call(rig: Rig) -> None:
    """A blind transfer during the gap: the agent's channel is gone, the caller's is not."""
    call = new_call()
    await rig.route(call, "a1")
    await rig.ring(call, "a1")
    await rig.answer(call, "a1")

    async def agent_leaves() -> None:
        del rig.peer.live_channels[f"{call}9"]

    await rig.outage(then=agent_leaves)
    assert await rig.state("a1") is S.WRAP_UP


async def test_a_call_routed_after_the_list_was_asked_for_is_kept(rig: Rig) -> None:
    """The list is a snapshot: a call routed (and an agent reserved) between the request and
    the answer may be missing from it only because its channel is newer."""
    gone, newer = new_call(), new_call()
    await rig.route(gone, "a1")
    await rig.ring(gone, "a1")
    asked = asyncio.Event()
    answer = asyncio.Event()

    async def list_after_the_new_call(session: PeerSession, action: Action) -> None:
        listed = dict(rig.peer.live_channels)  # the snapshot: taken when asked
        asked.set()
        async with asyncio.timeout(WAIT_S):
            await answer.wait()
        await answer_list(session, action, listed)

    async def hang_up() -> None:
        del rig.peer.live_channels[gone]
        rig.peer.handlers["coreshowchannels"] = list_after_the_new_call

    resyncs = rig.tracker.resyncs
    await rig.peer.stop()
    await hang_up()
    await rig.peer.start()
    async with asyncio.timeout(WAIT_S):
        await asked.wait()
    await rig.route(newer, "a2")  # routed by some worker while the list is on its way
    answer.set()
    await until(lambda: rig.tracker.resyncs, resyncs + 1)

    assert rig.waiting() == {newer}
    assert await rig.state("a2") is S.RINGING
    assert await rig.state("a1") is S.AVAILABLE  # the call that was gone did end


async def test_events_sent_before_the_list_are_handled_as_events_first(
    rig: Rig, new_phone: Callable[[], str]
) -> None:
    """A call that hangs up after the request but before the answer ends by its own
    ``Hangup`` (recorded as usual), not as an unseen end."""
    caller = new_phone()
    customer = await rig.timeline.store.create_customer("Bo", [Identity("phone", caller)])
    call = new_call()
    await rig.route(call, "a1", caller)
    await rig.ring(call, "a1", customer.customer_id)
    await rig.answer(call, "a1")

    async def hang_up_during_the_list(session: PeerSession, action: Action) -> None:
        del rig.peer.live_channels[call]
        del rig.peer.live_channels[f"{call}9"]
        await session.event("Hangup", ("Uniqueid", call), ("Cause", "16"))
        await answer_list(session, action, rig.peer.live_channels)

    rig.peer.handlers["coreshowchannels"] = hang_up_during_the_list
    await rig.outage()
    assert await rig.state("a1") is S.WRAP_UP
    ended = await rig.ended_on_timeline(customer.customer_id)
    assert len(ended) == 1 and ended[0]["first_hangup"] == "caller"
    assert rig.tracker.resync_ended == 0


async def test_a_failed_or_unanswered_list_is_logged_and_retried_at_the_next_login(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    call, other = new_call(), new_call()
    await rig.route(call, "a1")
    await rig.ring(call, "a1")
    await rig.route(other, "a2")
    await rig.ring(other, "a2")
    answers = iter(["refuse", "silence"])

    async def flaky_list(session: PeerSession, action: Action) -> None:
        if next(answers, "list") == "refuse":
            await session.respond(action, "Error", ("Message", "Permission denied"))
        # "silence": no answer at all (a hung Asterisk); the tracker times out after 1 s

    rig.peer.handlers["coreshowchannels"] = flaky_list

    del rig.peer.live_channels[call]  # it hangs up during the first outage
    caplog.set_level(logging.WARNING, "ivr_engine.contact_center.agent_call_resync")
    for _ in range(2):
        resyncs = rig.tracker.resyncs
        await rig.peer.stop()
        await rig.peer.start()
        rig.session = await rig.peer.next_login()
        await until(lambda: "AMI resync skipped" in caplog.text, True)
        caplog.clear()
        assert rig.tracker.resyncs == resyncs and call in rig.waiting()
    # the tracker still reads events after a failed resync (no answer: after its timeout)
    await rig.session.event("DialEnd", ("Uniqueid", other), ("DialStatus", "NOANSWER"))
    await until(lambda: rig.state("a2"), S.AVAILABLE)
    assert await rig.state("a1") is S.RINGING  # not ended yet: nobody could tell

    del rig.peer.handlers["coreshowchannels"]
    await rig.outage()  # the next login's list is answered
    assert call not in rig.waiting()
    assert await rig.state("a1") is S.AVAILABLE


async def test_a_restarted_tracker_adopts_agent_calls_still_up(
    rig: Rig, new_phone: Callable[[], str]
) -> None:
    """Worker 0 restarted (``--workers N``): a new tracker knows no call, the agent state
    (shared in Redis) still holds them. Calls gone are given back; calls still up are
    adopted, so their later ``Hangup`` ends them (before, the agent stayed on the call),
    under the call key the channel list shows (``IVR_CALL_KEY``), as the old tracker did."""
    caller = new_phone()
    customer = await rig.timeline.store.create_customer("Cy", [Identity("phone", caller)])
    talking, ringing, gone = new_call(), new_call(), new_call()
    talking_key = f"{talking}~0123456789abcdef"
    rig.peer.channel_vars[talking] = {"IVR_CALL_KEY": talking_key}
    await rig.route(talking, "a1", caller)
    await rig.agents.confirm("a1", talking)  # answered while nobody was listening
    await rig.route(ringing, "a2")
    await rig.route(gone, "a3")
    del rig.peer.live_channels[gone]
    await rig.tracker.aclose()

    successor = AgentCallTracker(rig.client, rig.agents, rig.timeline.store, load=rig.load)
    successor.start()
    try:
        await until(lambda: successor.resyncs, 1)  # at its start: the login is older
        assert await rig.state("a3") is S.AVAILABLE
        assert rig.waiting() == {talking, ringing}
        await rig.session.event("DialEnd", ("Uniqueid", ringing), ("DialStatus", "NOANSWER"))
        await rig.session.event("Hangup", ("Uniqueid", talking), ("Cause", "16"))
        await until(lambda: rig.state("a1"), S.WRAP_UP)
        await until(lambda: rig.state("a2"), S.AVAILABLE)

        async def ended_count() -> int:  # written after the agent's release: poll for it
            return len(await rig.ended_on_timeline(customer.customer_id))

        await until(ended_count, 1)
        ended = await rig.ended_on_timeline(customer.customer_id)
        assert ended[0]["recovered"] is True
        page = await rig.timeline.store.timeline(customer.customer_id)
        assert [e.event_id for e in page.events] == [f"voice:{talking_key}:ended:a1"]
    finally:
        await successor.aclose()
