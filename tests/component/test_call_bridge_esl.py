"""The whole bridge against FreeSWITCH: the fake inbound Event Socket (TCP, the documented
protocol) → ``Bridge`` with ``esl_url`` → outbox → bus (real Redis, or in-process) →
consumer → timeline (real SQLite, PostgreSQL with ``-m postgres``).

The call: a caller enters the ``public`` context, the IVR routes it (``ivr_engine::routed``)
and dials an agent (``ivr_engine::agent_dial``), the agent leg is created and bridged, the
agent holds and resumes, both hang up. Then the reader as an OS process
(``python -m crm_bridge.calls --roles reader --esl-url ...``), SIGKILLed mid-call while a
batch was on the bus but its reply lost, and restarted: the call finishes with exact
durations, each event once on the timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crm_bridge.bus import DEFAULT_PREFIX
from crm_bridge.calls import Bridge, BridgeSettings
from ivr_engine.timeline.timestamps import sqlite_timestamp
from tests.component.fake_freeswitch import FakeInbound
from tests.component.test_call_bridge_flow import (
    committed,
    customer_of,
    events_of,
    running,
    settings_over,
    store_of,
)
from tests.component.test_call_bridge_processes import REPO, FreezingProxy, _count, _stored, _until
from tests.redis_support import REDIS_URL, delete_prefix

T0 = 1_732_440_000_000_000  # microseconds, as Event-Date-Timestamp
KINDS = [
    "call.started", "call.ivr_routed", "call.transferred", "call.answered_by_agent",
    "call.held", "call.resumed", "call.ended",
]  # fmt: skip
ENDED = {
    "cause": 16,
    "cause_txt": "NORMAL_CLEARING",
    "ring_ms": 500,
    "wait_ms": 25_000,
    "talk_ms": 35_000,
    "hold_ms": 10_000,
    "total_ms": 60_200,
    "answered_by_agent": True,
}


def at(t: float) -> datetime:
    return datetime.fromtimestamp((T0 + round(t * 1_000_000)) / 1_000_000, UTC)


class FsCall:
    """One documented call's events, as FreeSWITCH sends them (``event plain``)."""

    def __init__(self, phone: str) -> None:
        self.phone = phone
        self.uuid, self.agent = str(uuid.uuid4()), str(uuid.uuid4())
        self.agent_channel = "sofia/internal/agent-1@198.51.100.8"

    def _stamp(self, t: float) -> dict[str, str]:
        return {"Event-Date-Timestamp": str(T0 + round(t * 1_000_000))}

    def caller(self, name: str, t: float, **extra: str) -> dict[str, str]:
        return {
            "Event-Name": name,
            "Core-UUID": "5f1c2da2-9958-44b2-ae1b-bce99d38f971",
            **self._stamp(t),
            "Unique-ID": self.uuid,
            "Channel-Call-UUID": self.uuid,
            "Call-Direction": "inbound",
            "Channel-Name": f"sofia/external/{self.phone}@198.51.100.7",
            "Caller-Caller-ID-Name": "Ada Lovelace",
            "Caller-Caller-ID-Number": self.phone,
            "Caller-Destination-Number": "2000",
            "Caller-Context": "public",
            **extra,
        }

    def leg(self, name: str, t: float, **extra: str) -> dict[str, str]:
        return {
            "Event-Name": name,
            **self._stamp(t),
            "Unique-ID": self.agent,
            "Channel-Call-UUID": self.uuid,  # the call_uuid a bridged leg inherits
            "Call-Direction": "outbound",
            "Channel-Name": self.agent_channel,
            "Caller-Destination-Number": "agent-1",
            "Caller-Context": "default",
            **extra,
        }

    def custom(self, subclass: str, t: float, **extra: str) -> dict[str, str]:
        return self.caller("CUSTOM", t, **{"Event-Subclass": f"ivr_engine::{subclass}", **extra})

    def until_agent(self) -> list[dict[str, str]]:
        """Caller → IVR → agent answers: four call events."""
        routed = {"Intent": "billing", "Target": "queue:billing", "Decision": "personalised"}
        return [
            self.caller("CHANNEL_CREATE", 0),
            {"Event-Name": "HEARTBEAT", **self._stamp(0.1), "Event-Info": "System Ready"},
            self.caller("CHANNEL_ANSWER", 0.5),
            self.custom("routed", 20, **routed, Outcome="routed", Agent="a1", Customer="c-42"),
            self.custom("agent_dial", 20.1, Agent="a1", Customer="c-42", Intent="billing"),
            self.leg("CHANNEL_CREATE", 20.2),
            self.leg("CHANNEL_ANSWER", 25),
            self.caller(
                "CHANNEL_BRIDGE",
                25,
                **{"Other-Leg-Unique-ID": self.agent, "Other-Leg-Channel-Name": self.agent_channel},
            ),
        ]

    def to_the_end(self) -> list[dict[str, str]]:
        """Hold, resume, hang-ups: three call events."""
        cleared = {"Hangup-Cause": "NORMAL_CLEARING"}
        return [
            self.leg("CHANNEL_HOLD", 30),
            self.leg("CHANNEL_UNHOLD", 40),
            self.caller("CHANNEL_UNBRIDGE", 60, **{"Other-Leg-Unique-ID": self.agent}),
            self.leg("CHANNEL_HANGUP_COMPLETE", 60, **cleared),
            self.caller(
                "CHANNEL_HANGUP_COMPLETE", 60.2, **cleared, variable_hangup_cause_q850="16"
            ),
        ]


@contextlib.asynccontextmanager
async def freeswitch() -> AsyncIterator[FakeInbound]:
    fake = FakeInbound(password="Clue:Con")  # a ':' in the password: URL-encoded in esl_url
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def esl_url(fake: FakeInbound) -> str:
    return f"esl://:Clue%3ACon@127.0.0.1:{fake.port}"


def esl_settings(
    fake: FakeInbound, database_url: str, tmp_path: Path, **extra: Any
) -> BridgeSettings:
    return settings_over(database_url, tmp_path, **({"esl_url": esl_url(fake)} | extra))


async def play(fake: FakeInbound, events: list[dict[str, str]]) -> None:
    for headers in events:
        await fake.emit(headers)


async def check_timeline(bridge: Bridge, call: FsCall) -> None:
    store = store_of(bridge)
    events = await events_of(store, await customer_of(store, call.phone))
    assert [e.event_type for e in events] == KINDS
    assert [e.event_id for e in events] == [f"esl:fs-a:{call.uuid}:{k}:1" for k in KINDS]
    assert {e.data["call_id"] for e in events} == {call.uuid}
    assert {e.channel for e in events} == {"voice"}
    started, routed, transferred, answered, *_, ended = events
    assert started.data["context"] == "public" and started.data["caller_name"] == "Ada Lovelace"
    assert routed.intent == "billing" and routed.data["engine_customer_id"] == "c-42"
    assert transferred.data["via"] == "ivr" and transferred.data["agent_id"] == "a1"
    assert answered.data["agent_channel"] == call.agent_channel
    assert answered.data["ring_ms"] == 4900 and answered.data["agent_id"] == "a1"
    assert {k: ended.data[k] for k in ENDED} == ENDED


async def test_a_freeswitch_call_lands_once_on_the_callers_customer(
    database_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    call = FsCall(new_phone())
    async with freeswitch() as fake:
        settings = esl_settings(fake, database_url, tmp_path, esl_source="fs-a")
        async with running(settings) as bridge:
            await fake.wait_subscribed()
            await play(fake, call.until_agent() + call.to_the_end())
            await committed(bridge, 7)
            await check_timeline(bridge, call)
            assert bridge.ami is None and bridge.reader is None
            assert bridge.esl_reader is not None and bridge.esl_reader.gaps == 0
    assert fake.sessions[0].commands[0] == "auth Clue:Con"


async def test_in_process_bus_and_a_second_call_after_a_switch_restart(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    first, second = FsCall(new_phone()), FsCall(new_phone())
    async with freeswitch() as fake:
        settings = esl_settings(fake, sqlite_url, tmp_path, bus_url=None, esl_source="fs-a")
        async with running(settings) as bridge:
            await fake.wait_subscribed()
            await play(fake, first.until_agent() + first.to_the_end())
            await committed(bridge, 7)
            fake.drop_all()  # FreeSWITCH restarts: the source reconnects and subscribes again
            await fake.wait_subscribed()
            await play(fake, second.until_agent() + second.to_the_end())
            await committed(bridge, 14)
            await check_timeline(bridge, first)
            await check_timeline(bridge, second)
            assert bridge.esl_reader is not None and bridge.esl_reader.gaps == 1


@contextlib.asynccontextmanager
async def esl_reader_process(
    fake: FakeInbound, bus_url: str, outbox: Path, stream: str, tmp_path: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    subscribed = sum(1 for s in fake.sessions if s.subscribed)
    log = (tmp_path / "bridge.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crm_bridge.calls", "--roles", "reader",
        "--esl-url", esl_url(fake), "--esl-source", "fs-a",
        "--bus-url", bus_url, "--outbox", str(outbox), "--stream", stream,
        "--publish-batch", "2",
        cwd=REPO, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
    )  # fmt: skip
    try:
        await fake.wait_subscribed(subscribed + 1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
        log.close()


async def _killed(proc: asyncio.subprocess.Process, fake: FakeInbound) -> None:
    proc.send_signal(signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL
    await _until(lambda: all(s.writer.is_closing() for s in fake.sessions), "socket closed")


def _has_row(outbox: Path, kind: str) -> bool:
    db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5)
    try:
        sql = "SELECT count(*) FROM outbox WHERE event_id LIKE ?"
        return int(db.execute(sql, (f"%:{kind}:%",)).fetchone()[0]) == 1
    finally:
        db.close()


def _rows(stored: Mapping[str, tuple[str, Any]], call: FsCall) -> list[str]:
    return sorted(k for k in stored if k.startswith(f"esl:fs-a:{call.uuid}:"))


async def test_sigkilled_esl_reader_mid_call_loses_nothing_and_writes_nothing_twice(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    call = FsCall(new_phone())
    stream = f"calls-{uuid.uuid4().hex[:12]}"
    outbox = tmp_path / "outbox.db"
    timeline_file = Path(sqlite_url.removeprefix("sqlite:///"))
    consumer_settings = BridgeSettings.build(
        roles=frozenset({"consumer"}), database_url=sqlite_url, bus_url=REDIS_URL,
        stream=stream, consumer_name="c1", shutdown_grace_s=0.5,
    )  # fmt: skip
    try:
        async with freeswitch() as fake, running(consumer_settings) as consumer:
            assert consumer.consumer is not None
            # 1. mid-call, a batch reaches the bus but its reply is lost; SIGKILL
            async with FreezingProxy(limit=2) as proxy:
                proxy_url = f"redis://127.0.0.1:{proxy.port}/0"
                async with esl_reader_process(fake, proxy_url, outbox, stream, tmp_path) as proc:
                    await play(fake, call.until_agent())
                    async with asyncio.timeout(20):
                        await proxy.frozen.wait()
                    await consumer.consumer.wait_committed(2, 20)
                    # the 4th event is committed (nothing is deleted once the bus froze)
                    await _until(lambda: _has_row(outbox, "call.answered_by_agent"), "4 rows")
                    await _killed(proc, fake)
            assert _count(outbox, "live_calls") == 1  # the call's state survived the kill

            # 2. restarted: the rest goes out (some rows a second time); the call ends
            async with esl_reader_process(fake, REDIS_URL, outbox, stream, tmp_path):
                await play(fake, call.to_the_end())
                await consumer.consumer.wait_committed(7, 20)
                await _until(lambda: _count(timeline_file, "timeline_events") >= 7, "rows")
                await _until(lambda: _count(outbox, "outbox") == 0, "outbox drained")
            assert _count(outbox, "live_calls") == 0
            assert consumer.consumer.committed > 7  # some were consumed twice ...
            stored = _stored(timeline_file)  # ... and written once
            assert _rows(stored, call) == sorted(f"esl:fs-a:{call.uuid}:{k}:1" for k in KINDS)
            occurred_at, ended = stored[f"esl:fs-a:{call.uuid}:call.ended:1"]
            assert {k: ended[k] for k in ENDED} == ENDED  # exact: the state came back
            assert occurred_at == sqlite_timestamp(at(60.2))
            await check_timeline(consumer, call)
    finally:
        await delete_prefix(f"{DEFAULT_PREFIX}{{{stream}}}")
