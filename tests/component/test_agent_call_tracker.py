"""``AgentCallTracker`` fed Asterisk 22's own event shapes: whichever side hangs up first ends
the agent's interaction, once (real agent store and timeline; no AMI connection needed)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from ivr_engine.agents.memory import InMemoryAgentStateStore
from ivr_engine.agents.model import AgentState
from ivr_engine.contact_center.agent_call_timeline import AGENT_ENDED, AGENT_MISSED
from ivr_engine.contact_center.router import AGENT_ANSWERED
from ivr_engine.contact_center.tracker import AgentCallTracker
from ivr_engine.ports import Identity
from ivr_engine.telephony.ami import AmiEvent
from ivr_engine.telephony.ami.parsing import build_message
from ivr_engine.timeline import Timeline


def ami(*headers: tuple[str, str]) -> AmiEvent:
    event = build_message(list(headers))
    assert isinstance(event, AmiEvent)
    return event


async def answered_call(
    timeline: Timeline, new_phone: Callable[[], str]
) -> tuple[AgentCallTracker, InMemoryAgentStateStore, str, str, str]:
    """Agent a1 reserved for a call, rung (IvrAgentDial) and answered (DialEnd ANSWER)."""
    caller = new_phone()
    customer = await timeline.store.create_customer("Ada", [Identity("phone", caller)])
    agents = InMemoryAgentStateStore()
    await agents.register_agent("a1")
    await agents.set_state("a1", AgentState.AVAILABLE)
    call, agent_leg = f"{uuid.uuid4().int % 10**9}.1", f"{uuid.uuid4().int % 10**9}.2"
    assert await agents.reserve("a1", call, 30)
    assert await agents.confirm("a1", call) is AgentState.RINGING  # as the router leaves it
    tracker = AgentCallTracker(None, agents, timeline.store)  # type: ignore[arg-type]
    await tracker.handle(
        ami(("Event", "UserEvent"), ("UserEvent", "IvrAgentDial"), ("Uniqueid", call),
            ("Agent", "a1"), ("Customer", customer.customer_id), ("CallerIDNum", caller))
    )  # fmt: skip
    await tracker.handle(
        ami(("Event", "DialEnd"), ("Channel", "PJSIP/trunk-00000001"), ("Uniqueid", call),
            ("DestChannel", "PJSIP/agent-1-00000002"), ("DestUniqueid", agent_leg),
            ("DialStatus", "ANSWER"))
    )  # fmt: skip
    assert (await agents.get("a1")).state is AgentState.ON_CALL
    return tracker, agents, call, agent_leg, customer.customer_id


async def ended_events(timeline: Timeline, customer_id: str) -> list[dict[str, object]]:
    page = await timeline.store.timeline(customer_id)
    return [dict(e.data) for e in page.events if e.event_type == AGENT_ENDED]


async def test_the_agent_hanging_up_first_ends_the_interaction_at_once(
    timeline: Timeline, new_phone: Callable[[], str]
) -> None:
    """A blind transfer: the agent's leg hangs up, the caller talks on with someone else."""
    tracker, agents, call, agent_leg, customer_id = await answered_call(timeline, new_phone)
    await tracker.handle(ami(("Event", "Hangup"), ("Uniqueid", agent_leg), ("Cause", "16")))
    assert (await agents.get("a1")).state is AgentState.WRAP_UP
    await tracker.handle(ami(("Event", "Hangup"), ("Uniqueid", call), ("Cause", "16")))
    ended = await ended_events(timeline, customer_id)
    assert len(ended) == 1 and ended[0]["first_hangup"] == "agent" and ended[0]["agent_id"] == "a1"
    await agents.set_state("a1", AgentState.AVAILABLE)  # the caller's later hang-up changed
    await tracker.handle(ami(("Event", "Hangup"), ("Uniqueid", call), ("Cause", "16")))
    assert (await agents.get("a1")).state is AgentState.AVAILABLE  # nothing about a1


async def test_the_caller_hanging_up_first_ends_it_once(
    timeline: Timeline, new_phone: Callable[[], str]
) -> None:
    tracker, agents, call, agent_leg, customer_id = await answered_call(timeline, new_phone)
    await tracker.handle(ami(("Event", "Hangup"), ("Uniqueid", call), ("Cause", "16")))
    assert (await agents.get("a1")).state is AgentState.WRAP_UP
    await agents.set_state("a1", AgentState.AVAILABLE)
    await tracker.handle(ami(("Event", "Hangup"), ("Uniqueid", agent_leg), ("Cause", "16")))
    assert (await agents.get("a1")).state is AgentState.AVAILABLE
    ended = await ended_events(timeline, customer_id)
    assert len(ended) == 1 and ended[0]["first_hangup"] == "caller"


async def test_with_the_bridge_recording_answers_the_tracker_writes_only_misses(
    timeline: Timeline, new_phone: Callable[[], str]
) -> None:
    """agent_events_on_timeline: false — the bridge records the answer and the end, so the
    tracker only drives agent state (and still records a missed ring, which the bridge does
    not); the agent's state changes exactly as with timeline events on."""
    _, agents, _, _, customer_id = await answered_call(timeline, new_phone)
    quiet = AgentCallTracker(None, agents, timeline.store, record_on_timeline=False)  # type: ignore[arg-type]
    caller = new_phone()
    other = await timeline.store.create_customer("Bo", [Identity("phone", caller)])
    answered, missed = (f"{uuid.uuid4().int % 10**9}.1" for _ in range(2))
    for agent, uid in (("a2", answered), ("a3", missed)):
        await agents.register_agent(agent)
        await agents.set_state(agent, AgentState.AVAILABLE)
        assert await agents.reserve(agent, uid, 30)
        await agents.confirm(agent, uid)
    for agent, uid, status in (("a2", answered, "ANSWER"), ("a3", missed, "NOANSWER")):
        await quiet.handle(
            ami(("Event", "UserEvent"), ("UserEvent", "IvrAgentDial"), ("Uniqueid", uid),
                ("Agent", agent), ("Customer", other.customer_id), ("CallerIDNum", caller))
        )  # fmt: skip
        await quiet.handle(
            ami(("Event", "DialEnd"), ("Uniqueid", uid), ("DestUniqueid", f"{uid}9"),
                ("DialStatus", status))
        )  # fmt: skip
    assert (await agents.get("a2")).state is AgentState.ON_CALL
    assert (await agents.get("a3")).state is AgentState.AVAILABLE  # given back
    await quiet.handle(ami(("Event", "Hangup"), ("Uniqueid", answered), ("Cause", "16")))
    assert (await agents.get("a2")).state is AgentState.WRAP_UP
    page = await timeline.store.timeline(other.customer_id)
    assert [e.event_type for e in page.events] == [AGENT_MISSED]
    # the default tracker records the answer (the affinity reads it, or the bridge's form)
    assert AGENT_ANSWERED in {
        e.event_type for e in (await timeline.store.timeline(customer_id)).events
    }
