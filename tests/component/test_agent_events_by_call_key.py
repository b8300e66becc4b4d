"""The AMI tracker's agent events go under the call's key (``IVR_CALL_KEY``, set by the
engine with the routing, carried by AMI as ``ChanVariable``), not the bare uniqueid.

Two PBXs without their own ``systemname`` (or one restarted) can give two calls the same
uniqueid. Keyed by it, the second call's ``call.agent_answered`` by the same agent had the
first one's event id, and was dropped as its duplicate; and the screen pop, which leaves
the ringing call's own events (``voice:<call key>:``) out of the recent contacts, showed
the call's own earlier miss as a contact. Real Redis agent store, real timeline (SQLite,
and PostgreSQL with ``-m postgres``), the real desktop hub.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from ivr_engine.agents import RedisAgentStateStore
from ivr_engine.agents.model import AgentState
from ivr_engine.contact_center.agent_call_timeline import AGENT_ENDED, AGENT_MISSED
from ivr_engine.contact_center.router import AGENT_ANSWERED
from ivr_engine.contact_center.tracker import AgentCallTracker
from ivr_engine.desktop import DesktopHub
from ivr_engine.desktop.pop import Ring
from ivr_engine.flows.call_record import IncomingCall
from ivr_engine.ports import Identity
from ivr_engine.telephony.ami import AmiEvent
from ivr_engine.telephony.ami.parsing import build_message
from ivr_engine.timeline import Timeline
from tests.redis_support import REDIS_URL, delete_prefix, require_redis

AGENT_KINDS = {AGENT_ANSWERED, AGENT_MISSED, AGENT_ENDED}
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Ticks:
    """A clock one second further on each read: events in a known order."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
async def agents() -> AsyncIterator[RedisAgentStateStore]:
    await require_redis()
    prefix = f"test:{{agents-{uuid.uuid4().hex}}}:"
    store = RedisAgentStateStore.from_url(REDIS_URL, prefix=prefix)
    try:
        for agent_id in ("a1", "a2"):
            await store.register_agent(agent_id)
            await store.set_state(agent_id, AgentState.AVAILABLE)
        yield store
    finally:
        await store.aclose()
        await delete_prefix(prefix)


def ami(*headers: tuple[str, str]) -> AmiEvent:
    event = build_message(list(headers))
    assert isinstance(event, AmiEvent)
    return event


def agent_dial(
    call: IncomingCall, agent_id: str, customer_id: str, call_key: str | None = None
) -> AmiEvent:
    """Asterisk 22's ``UserEvent(IvrAgentDial)`` with manager.conf ``channelvars =
    IVR_CALL_KEY``: the caller channel's variable (``call_key``, by default the call's own)
    rides along as ``ChanVariable``."""
    key = call.call_key if call_key is None else call_key
    return ami(("Event", "UserEvent"), ("Channel", "PJSIP/trunk-00000001"),
               ("CallerIDNum", call.caller_id or ""), ("Uniqueid", call.call_id),
               ("ChanVariable", f"IVR_CALL_KEY={key}"),
               ("UserEvent", "IvrAgentDial"), ("Agent", agent_id),
               ("Customer", customer_id))  # fmt: skip


def dial_end(call: IncomingCall, status: str) -> AmiEvent:
    return ami(("Event", "DialEnd"), ("Uniqueid", call.call_id),
               ("DestUniqueid", f"{call.call_id}9"), ("DialStatus", status))  # fmt: skip


def hangup(call: IncomingCall) -> AmiEvent:
    return ami(("Event", "Hangup"), ("Uniqueid", call.call_id), ("Cause", "16"))


async def ring(
    tracker: AgentCallTracker,
    agents: RedisAgentStateStore,
    call: IncomingCall,
    agent_id: str,
    customer_id: str,
) -> None:
    """What the router (reserve, ring) and then the dialplan (``IvrAgentDial``) do."""
    assert await agents.reserve(agent_id, call.call_id, 30)
    await agents.confirm(agent_id, call.call_id)
    await tracker.handle(agent_dial(call, agent_id, customer_id))


async def test_two_calls_sharing_a_uniqueid_keep_their_own_agent_events(
    timeline: Timeline, agents: RedisAgentStateStore, new_phone: Callable[[], str]
) -> None:
    caller = new_phone()
    customer = await timeline.store.create_customer("Ada", [Identity("phone", caller)])
    cid = customer.customer_id
    uniqueid = f"{uuid.uuid4().int % 10**9}.7"
    first = IncomingCall(uniqueid, caller, "PJSIP/trunk-1", "main", NOW)
    second = IncomingCall(uniqueid, caller, "PJSIP/trunk-1", "main", NOW)  # another PBX
    assert first.call_key != second.call_key
    tracker = AgentCallTracker(None, agents, timeline.store, clock=Ticks())  # type: ignore[arg-type]

    # the first call: a1 answers, the caller hangs up
    await ring(tracker, agents, first, "a1", cid)
    await tracker.handle(dial_end(first, "ANSWER"))
    await tracker.handle(hangup(first))
    await agents.set_state("a1", AgentState.AVAILABLE)  # after wrap-up

    # the second call, same uniqueid: a2 does not answer, it rings a1
    await ring(tracker, agents, second, "a2", cid)
    await tracker.handle(dial_end(second, "NOANSWER"))
    hub = DesktopHub(timeline.store)
    await hub.pop("a1", Ring(call_id=uniqueid, customer_id=cid, call_key=second.call_key))
    await ring(tracker, agents, second, "a1", cid)
    await tracker.handle(dial_end(second, "ANSWER"))
    assert (await agents.get("a1")).state is AgentState.ON_CALL

    # the same dial and answer seen again (a restarted tracker handed them once more)
    again = AgentCallTracker(None, agents, timeline.store, clock=Ticks())  # type: ignore[arg-type]
    await again.handle(agent_dial(second, "a1", cid))
    await again.handle(dial_end(second, "ANSWER"))
    await tracker.handle(hangup(second))

    page = await timeline.store.timeline(cid)
    written = sorted((e.event_id, e.event_type) for e in page.events if e.event_type in AGENT_KINDS)
    one, two = first.call_key, second.call_key
    assert written == sorted([
        (f"voice:{one}:answered:a1", AGENT_ANSWERED),
        (f"voice:{one}:ended:a1", AGENT_ENDED),
        (f"voice:{two}:missed:NOANSWER:a2", AGENT_MISSED),
        (f"voice:{two}:answered:a1", AGENT_ANSWERED),
        (f"voice:{two}:ended:a1", AGENT_ENDED),
    ])  # fmt: skip
    answers = [e for e in page.events if e.event_type == AGENT_ANSWERED]
    assert [e.data["agent_id"] for e in answers] == ["a1", "a1"]

    # the pop of the second call's ring at a1: the first call's answer and end are recent
    # contacts; the second call's own miss at a2, a moment before, is not one
    pop = hub.latest_pop("a1")
    assert pop is not None and pop["history_available"]
    contacts = [c["event_type"] for c in pop["recent_contacts"] if c["channel"] == "voice"]
    assert contacts == [AGENT_ENDED, AGENT_ANSWERED]


async def test_a_call_the_engine_did_not_route_is_keyed_by_its_uniqueid(
    timeline: Timeline, agents: RedisAgentStateStore, new_phone: Callable[[], str]
) -> None:
    """No ``IVR_CALL_KEY`` on the event (a dialplan of its own, or no ``channelvars``):
    the uniqueid, as before; a second sighting still writes nothing twice."""
    caller = new_phone()
    customer = await timeline.store.create_customer("Bo", [Identity("phone", caller)])
    uniqueid = f"{uuid.uuid4().int % 10**9}.8"
    tracker = AgentCallTracker(None, agents, timeline.store)  # type: ignore[arg-type]
    assert await agents.reserve("a2", uniqueid, 30)
    await agents.confirm("a2", uniqueid)
    dial = ami(("Event", "UserEvent"), ("UserEvent", "IvrAgentDial"), ("Uniqueid", uniqueid),
               ("Agent", "a2"), ("Customer", customer.customer_id),
               ("CallerIDNum", caller))  # fmt: skip
    answer = ami(("Event", "DialEnd"), ("Uniqueid", uniqueid), ("DialStatus", "ANSWER"))
    for seen in (tracker, AgentCallTracker(None, agents, timeline.store)):  # type: ignore[arg-type]
        await seen.handle(dial)
        await seen.handle(answer)
    page = await timeline.store.timeline(customer.customer_id)
    assert [e.event_id for e in page.events] == [f"voice:{uniqueid}:answered:a2"]


async def test_a_key_of_another_call_is_not_taken_and_is_logged(
    timeline: Timeline,
    agents: RedisAgentStateStore,
    new_phone: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``IVR_CALL_KEY`` naming another uniqueid (a variable carried over, a dialplan of its
    own): the event is keyed by this call's uniqueid, and the log says why."""
    caller = new_phone()
    customer = await timeline.store.create_customer("Cy", [Identity("phone", caller)])
    call = IncomingCall(f"{uuid.uuid4().int % 10**9}.9", caller, "PJSIP/t-1", "main", NOW)
    stray = IncomingCall("1700000000.1", caller, "PJSIP/t-1", "main", NOW)
    tracker = AgentCallTracker(None, agents, timeline.store)  # type: ignore[arg-type]
    await tracker.handle(agent_dial(call, "a2", customer.customer_id, stray.call_key))
    await tracker.handle(dial_end(call, "NOANSWER"))
    page = await timeline.store.timeline(customer.customer_id)
    assert [e.event_id for e in page.events] == [f"voice:{call.call_id}:missed:NOANSWER:a2"]
    assert f"{stray.call_key!r} is not this call's key" in caplog.text
