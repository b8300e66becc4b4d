"""FreeSWITCH's inbound Event Socket → the bridge's call events, against a protocol-exact fake.

``FakeInbound`` sends ``auth/request``, checks the password, takes ``event plain ...`` and
emits a documented event sequence (a caller through the IVR to an agent, a hold, hang-ups);
``EslEventSource`` + ``EslReader`` normalise it into the durable outbox.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crm_bridge.calls.esl_normalise import CUSTOM_SUBCLASSES, SUBSCRIBED_EVENTS, normalise_esl
from crm_bridge.calls.esl_reader import EslReader
from crm_bridge.calls.model import NormalisedEvent
from crm_bridge.calls.outbox import SqliteOutbox
from crm_bridge.calls.state import BridgeState, NormaliserConfig
from ivr_engine.telephony.esl import EslEvent, EslEventSource
from tests.component.fake_freeswitch import FakeInbound

CALLER = "0f6f5b7e-5a1d-4c39-9d0a-1f2e3d4c5b6a"
AGENT = "7c2a9e10-3b4d-4f5e-8a6b-9c0d1e2f3a4b"
T0 = 1_732_440_000_000_000  # microseconds, as Event-Date-Timestamp
WAIT_S = 10.0


def at(seconds: float) -> str:
    return str(T0 + round(seconds * 1_000_000))


def caller_event(name: str, t: float, **extra: str) -> dict[str, str]:
    return {
        "Event-Name": name,
        "Core-UUID": "5f1c2da2-9958-44b2-ae1b-bce99d38f971",
        "Event-Date-Timestamp": at(t),
        "Unique-ID": CALLER,
        "Channel-Call-UUID": CALLER,
        "Call-Direction": "inbound",
        "Channel-Name": "sofia/external/+15551230001@198.51.100.7",
        "Caller-Caller-ID-Name": "Ada Lovelace",
        "Caller-Caller-ID-Number": "+15551230001",
        "Caller-Destination-Number": "2000",
        "Caller-Context": "public",
        **extra,
    }


def agent_event(name: str, t: float, **extra: str) -> dict[str, str]:
    return {
        "Event-Name": name,
        "Event-Date-Timestamp": at(t),
        "Unique-ID": AGENT,
        "Channel-Call-UUID": CALLER,  # the call_uuid a bridged leg inherits
        "Call-Direction": "outbound",
        "Channel-Name": "sofia/internal/agent-1@198.51.100.8",
        "Caller-Destination-Number": "agent-1",
        "Caller-Context": "default",
        **extra,
    }


def custom(subclass: str, t: float, **extra: str) -> dict[str, str]:
    return caller_event("CUSTOM", t, **{"Event-Subclass": f"ivr_engine::{subclass}", **extra})


CALL = [
    caller_event("CHANNEL_CREATE", 0),
    {"Event-Name": "HEARTBEAT", "Event-Date-Timestamp": at(0.1), "Event-Info": "System Ready"},
    caller_event("CHANNEL_ANSWER", 0.5),
    custom(
        "routed",
        20,
        Intent="billing",
        Target="queue:billing",
        Decision="personalised",
        Outcome="routed",
        Agent="a1",
        Customer="c-42",
    ),
    custom("agent_dial", 20.1, Agent="a1", Customer="c-42", Intent="billing"),
    agent_event("CHANNEL_CREATE", 20.2),
    agent_event("CHANNEL_ANSWER", 25),
    caller_event(
        "CHANNEL_BRIDGE",
        25,
        **{
            "Other-Leg-Unique-ID": AGENT,
            "Other-Leg-Channel-Name": "sofia/internal/agent-1@198.51.100.8",
        },
    ),
    agent_event("CHANNEL_HOLD", 30),
    agent_event("CHANNEL_UNHOLD", 40),
    caller_event("CHANNEL_UNBRIDGE", 60, **{"Other-Leg-Unique-ID": AGENT}),
    agent_event("CHANNEL_HANGUP_COMPLETE", 60, **{"Hangup-Cause": "NORMAL_CLEARING"}),
    caller_event(
        "CHANNEL_HANGUP_COMPLETE",
        60.2,
        **{"Hangup-Cause": "NORMAL_CLEARING", "variable_hangup_cause_q850": "16"},
    ),
]


def config() -> NormaliserConfig:
    return NormaliserConfig(source="fs1", inbound_contexts=("public",))


@pytest.fixture
async def fake() -> AsyncIterator[FakeInbound]:
    peer = FakeInbound(password="ClueCon")
    await peer.start()
    try:
        yield peer
    finally:
        await peer.stop()


def source_for(fake: FakeInbound, password: str = "ClueCon") -> EslEventSource:
    return EslEventSource("127.0.0.1", fake.port, password, SUBSCRIBED_EVENTS, backoff=(0.01, 0.05))


async def take(source: EslEventSource, count: int) -> list[EslEvent]:
    async with asyncio.timeout(WAIT_S):
        return [await source.queue.get() for _ in range(count)]


async def test_documented_sequence_becomes_the_call_events(fake: FakeInbound) -> None:
    source = source_for(fake)
    async with asyncio.TaskGroup() as group:
        group.create_task(source.run())
        await fake.wait_subscribed()
        for headers in CALL:
            await fake.emit(headers)
        events = await take(source, len(CALL) - 1)  # HEARTBEAT is not handed on
        await source.close()
    assert fake.sessions[0].commands == [
        "auth ClueCon",
        "event plain CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_UNBRIDGE "
        "CHANNEL_HOLD CHANNEL_UNHOLD CHANNEL_HANGUP_COMPLETE HEARTBEAT CUSTOM "
        "ivr_engine::fallback ivr_engine::routed ivr_engine::overflow ivr_engine::agent_dial",
    ]
    state = BridgeState(config())
    out = [n for e in events for n in normalise_esl(e, state, at=datetime.now(UTC))]
    assert [n.kind.value for n in out] == [
        "call.started", "call.ivr_routed", "call.transferred", "call.answered_by_agent",
        "call.held", "call.resumed", "call.ended",
    ]  # fmt: skip
    check_call(out)
    assert not state.calls and state.has_ended(CALLER)


def check_call(out: list[NormalisedEvent]) -> None:
    started, routed, transferred, answered, held, resumed, ended = out
    assert started.caller == "+15551230001" and started.call_id == CALLER
    assert started.data["channel"] == "sofia/external/+15551230001@198.51.100.7"
    assert started.occurred_at == datetime.fromtimestamp(T0 / 1e6, UTC)
    assert routed.intent == "billing" and routed.data["target"] == "queue:billing"
    assert routed.data["engine_customer_id"] == "c-42"
    assert transferred.data == {"via": "ivr", "agent_id": "a1", "engine_customer_id": "c-42"}
    assert answered.data["agent_channel"] == "sofia/internal/agent-1@198.51.100.8"
    assert answered.data["ring_ms"] == 4900 and answered.data["agent_id"] == "a1"
    assert held.data["by"] == "agent" and resumed.data["held_ms"] == 10_000
    assert ended.data == {
        "cause": 16,
        "cause_txt": "NORMAL_CLEARING",
        "ring_ms": 500,
        "wait_ms": 25_000,
        "talk_ms": 35_000,
        "hold_ms": 10_000,
        "total_ms": 60_200,
        "answered_by_agent": True,
    }
    assert ended.event_id == f"esl:fs1:{CALLER}:call.ended:1"
    assert [n.seq for n in out] == list(range(1, 8))


@dataclass
class Running:
    fake: FakeInbound
    reader: EslReader
    outbox: SqliteOutbox
    committed: asyncio.Event

    async def rows(self) -> list[NormalisedEvent]:
        return [NormalisedEvent.from_bus(r.event) for r in await self.outbox.read_after(0, 1000)]

    async def until(self, done: Callable[[list[NormalisedEvent]], bool]) -> list[NormalisedEvent]:
        async with asyncio.timeout(WAIT_S):
            while True:
                self.committed.clear()
                rows = await self.rows()
                if done(rows):
                    return rows
                await self.committed.wait()

    async def until_kind(self, call_id: str, kind: str) -> list[NormalisedEvent]:
        return await self.until(lambda rows: (call_id, kind) in pairs(rows))

    async def gap(self, *meanwhile: dict[str, str]) -> None:
        """The bridge loses FreeSWITCH; ``meanwhile`` happens; it reconnects."""
        listed = self.fake.listings
        self.fake.down()
        for headers in meanwhile:
            await self.fake.emit(headers)  # nobody listens: only the channel table changes
        self.fake.up()
        await self.fake.wait_listed(listed + 1)


def pairs(rows: list[NormalisedEvent]) -> Counter[tuple[str, str]]:
    return Counter((r.call_id, r.kind.value) for r in rows)


@pytest.fixture
async def running(fake: FakeInbound, tmp_path: Path) -> AsyncIterator[Running]:
    outbox = await SqliteOutbox.open(tmp_path / "outbox.db", sync="normal")
    committed = asyncio.Event()
    reader = EslReader(source_for(fake), outbox, BridgeState(config()), on_committed=committed.set)
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(reader.run())
            await fake.wait_listed(1)
            yield Running(fake, reader, outbox, committed)
            await reader.close()
    finally:
        await outbox.close()


async def test_reader_commits_the_call_events_to_the_outbox(running: Running) -> None:
    for headers in CALL:
        await running.fake.emit(headers)
    rows = await running.until(lambda rows: len(rows) >= 7)
    assert await running.outbox.live_calls() == []  # the ended call left the state
    assert [r.call_id for r in rows] == [CALLER] * 7
    check_call(rows)


async def test_an_event_the_normaliser_fails_on_is_skipped_not_the_end_of_the_bridge(
    running: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import crm_bridge.calls.esl_reader as esl_reader

    real = esl_reader.normalise_esl

    def buggy(event: Any, *args: Any, **kwargs: Any) -> Any:
        if event.get("X-Boom"):
            raise KeyError("a bug in the normaliser")
        return real(event, *args, **kwargs)

    monkeypatch.setattr(esl_reader, "normalise_esl", buggy)
    await running.fake.emit({**CALL[0], "X-Boom": "1"})  # a CHANNEL_CREATE it fails on
    for headers in CALL:
        await running.fake.emit(headers)
    rows = await running.until(lambda rows: len(rows) >= 7)
    check_call(rows)  # every event after it still became its call event
    assert running.reader.events_skipped == 1
    assert "CHANNEL_CREATE" in caplog.text and "skipped (1 so far)" in caplog.text


async def test_heartbeats_keep_a_quiet_switch_connected(fake: FakeInbound) -> None:
    """mod_event_socket takes every word after ``CUSTOM`` as a subclass: HEARTBEAT must come
    before it, or no heartbeat is sent and a switch with no calls looks dead."""
    source = EslEventSource(
        "127.0.0.1", fake.port, "ClueCon", SUBSCRIBED_EVENTS,
        backoff=(0.01, 0.05), idle_timeout_s=0.4,
    )  # fmt: skip
    beat = {"Event-Name": "HEARTBEAT", "Event-Date-Timestamp": at(0), "Event-Info": "System Ready"}
    async with asyncio.TaskGroup() as group:
        group.create_task(source.run())
        await fake.wait_subscribed()
        for _ in range(12):  # 1.2 s: three idle timeouts without the heartbeats
            await asyncio.sleep(0.1)
            await fake.emit(beat)
        await fake.emit(CALL[3])  # a CUSTOM ivr_engine::routed: the subclasses still count
        (event,) = await take(source, 1)
        await source.close()
    assert source.connections == 1 and len(fake.sessions) == 1  # no idle-timeout reconnect
    session = fake.sessions[0]
    assert "HEARTBEAT" in session.subscribed and "HEARTBEAT" not in session.subclasses
    assert session.subclasses == set(CUSTOM_SUBCLASSES)
    assert (event.name, event.subclass) == ("CUSTOM", "ivr_engine::routed")


async def test_wrong_password_is_retried_and_never_subscribes(fake: FakeInbound) -> None:
    source = source_for(fake, password="wrong")
    async with asyncio.TaskGroup() as group:
        group.create_task(source.run())
        await fake.wait_sessions(2)  # refused, then tried again after the back-off
        await source.close()
    assert fake.sessions[0].commands == ["auth wrong"]  # no "event plain" after the refusal
    assert all(s.commands in ([], ["auth wrong"]) for s in fake.sessions)
    assert source.connections == 0


async def test_connection_lost_reconnects_and_events_continue(fake: FakeInbound) -> None:
    source = source_for(fake)
    async with asyncio.TaskGroup() as group:
        group.create_task(source.run())
        await fake.wait_subscribed()
        await fake.emit(CALL[0])
        first = await take(source, 1)
        fake.drop_all()  # FreeSWITCH restarts
        await fake.wait_subscribed()
        await fake.emit(CALL[2])
        second = await take(source, 1)
        await source.close()
    assert [e.name for e in first + second] == ["CHANNEL_CREATE", "CHANNEL_ANSWER"]
    assert source.connections == 2


async def test_malformed_frame_drops_the_connection_not_the_source(fake: FakeInbound) -> None:
    source = source_for(fake)
    async with asyncio.TaskGroup() as group:
        group.create_task(source.run())
        await fake.wait_subscribed()
        bad = b"Content-Type: text/event-plain\nContent-Length: 99999999999\n\n"
        await fake.emit(CALL[0], raw=bad)
        await fake.wait_subscribed(2)  # dropped, connected and subscribed again
        await fake.emit(CALL[0])
        (event,) = await take(source, 1)
        await source.close()
    assert event.unique_id == CALLER
