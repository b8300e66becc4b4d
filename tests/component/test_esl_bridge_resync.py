"""The bridge's ESL reader resyncs after every (re)connect from ``api show channels as json``,
against the fake FreeSWITCH (which keeps its channel table from the events it emits, also
while the bridge is disconnected, and lists it as mod_commands does)."""

from __future__ import annotations

import asyncio
from collections import Counter

from ivr_engine.telephony.esl import EslApiOutput
from tests.component.fake_freeswitch import FakeInbound
from tests.component.test_esl_inbound_events import (
    CALL,
    Running,
    agent_event,
    caller_event,
    fake,
    pairs,
    running,
    source_for,
    take,
)

__all__ = ["fake", "running"]  # the fixtures, imported


def call_event(uid: str, name: str, t: float, **extra: str) -> dict[str, str]:
    return caller_event(name, t, **{"Unique-ID": uid, "Channel-Call-UUID": uid, **extra})


def hangup(uid: str, t: float) -> dict[str, str]:
    return call_event(uid, "CHANNEL_HANGUP_COMPLETE", t, **{"Hangup-Cause": "NORMAL_CLEARING"})


async def test_a_call_that_ends_while_disconnected_gets_one_approximate_end(
    running: Running,
) -> None:
    await running.fake.emit(call_event("call-a", "CHANNEL_CREATE", 0))
    await running.until_kind("call-a", "call.started")
    await running.gap(hangup("call-a", 30))
    rows = await running.until_kind("call-a", "call.ended")
    (ended,) = [r for r in rows if r.kind.value == "call.ended"]
    assert ended.event_id == "esl:fs1:call-a:call.ended:1"
    assert ended.data["approximate"] is True and ended.data["cause"] is None
    assert "not connected to FreeSWITCH" in ended.data["cause_txt"]
    assert await running.outbox.live_calls() == []


async def test_a_call_that_starts_while_disconnected_is_picked_up_then_ends(
    running: Running,
) -> None:
    await running.gap(call_event("call-b", "CHANNEL_CREATE", 5))
    rows = await running.until_kind("call-b", "call.started")
    (started,) = rows
    assert started.event_id == "esl:fs1:call-b:call.started:1"
    assert started.caller == "+15551230001"
    assert started.data["recovered"] is True and started.data["context"] == "public"
    await running.fake.emit(hangup("call-b", 40))
    rows = await running.until_kind("call-b", "call.ended")
    assert rows[-1].data["approximate"] is True  # the start time came from the list


async def test_repeated_reconnects_duplicate_nothing(running: Running) -> None:
    fake = running.fake
    await fake.emit(call_event("live", "CHANNEL_CREATE", 0))
    await fake.emit(call_event("ends", "CHANNEL_CREATE", 1))
    await running.until_kind("ends", "call.started")
    await running.gap(hangup("ends", 10), call_event("new", "CHANNEL_CREATE", 11))
    await running.gap()
    await running.gap()
    await fake.emit(call_event("marker", "CHANNEL_CREATE", 20))  # queued after the lists
    rows = await running.until_kind("marker", "call.started")
    assert running.reader.resyncs == 4  # the first login, then three reconnects
    assert pairs(rows) == Counter(
        {
            ("live", "call.started"): 1,
            ("ends", "call.started"): 1,
            ("ends", "call.ended"): 1,
            ("new", "call.started"): 1,
            ("marker", "call.started"): 1,
        }
    )
    live = {call.call_id for call in await running.outbox.live_calls()}
    assert live == {"live", "new", "marker"}


async def test_agent_leg_gone_meanwhile_is_closed_and_the_call_goes_on(running: Running) -> None:
    fake = running.fake
    for headers in CALL[:8]:  # the caller, routed to the agent, bridged
        await fake.emit(headers)
    caller = CALL[0]["Unique-ID"]
    await running.until_kind(caller, "call.answered_by_agent")
    await running.gap(agent_event("CHANNEL_HANGUP_COMPLETE", 60))
    await fake.emit(call_event("marker", "CHANNEL_CREATE", 61))
    await running.until_kind("marker", "call.started")
    (call,) = [c for c in await running.outbox.live_calls() if c.call_id == caller]
    assert call.agents == {} and call.talk_ms > 0  # talk time counted to the resync


async def test_the_list_comes_after_the_events_freeswitch_sent_before_it(
    fake: FakeInbound,
) -> None:
    source = source_for(fake)
    source.after_login("show channels as json")
    fake.before_api = [CALL[0]]
    async with asyncio.TaskGroup() as group:
        group.create_task(source.run())
        first, second = await take(source, 2)
        await source.close()
    assert isinstance(second, EslApiOutput) and getattr(first, "name", "") == "CHANNEL_CREATE"
    assert second.connection == 1 and second.output.startswith('{"row_count":')
    assert fake.sessions[0].commands[-1] == "api show channels as json"
