"""The call-event bridge against the real Asterisk 22 of the testbed, with SIPp callers.

The bridge (``crm_bridge.calls.Bridge``: reader + consumer in this process, the real Redis
bus at 127.0.0.1:6379 on a stream of its own, a fresh SQLite timeline) logs in to AMI as
``ivrtest``. Nothing listens on the FastAGI port, so every call goes through the dialplan's
static menu (``ivr-fail``: ``IvrFallback``); key 6 routes to billing (``IvrRouted``), no
agent endpoint is set, so the call overflows (``IvrOverflow``) and Asterisk hangs up.

Checked on the timeline (the customer the bridge created for each new caller ID):

* a caller who presses 6: call.started, call.ivr_fallback, call.ivr_routed (billing,
  dialplan-fallback), call.overflowed, call.ended (cause 16), each exactly once, in order;
* a caller who hangs up in the menu: call.started, call.ivr_fallback, call.ended (cause 0,
  as Asterisk 22.10 reports a BYE that ends ``Background()``), with ring/total durations;
* Asterisk restarting under a live call: ``core stop now`` hangs the call up first (its
  Hangup arrives: an exact end); a crash (SIGKILL) sends nothing, and after the re-login the
  resync finds the call gone and closes it (``approximate``, no cause). The AMI client logs
  in again; a call after the restart is normal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import _fail, _testbed
from sipp import run_sipp_call

from crm_bridge.bus import DEFAULT_PREFIX
from crm_bridge.calls import Bridge, BridgeSettings
from crm_bridge.calls.normalise import ASTERISK_EVENT_NAMES
from ivr_engine.ports import Identity, StoredEvent, TimelineStore
from tests.redis_support import REDIS_URL, delete_prefix, require_redis

if TYPE_CHECKING:
    from conftest import Testbed

FASTAGI_PORT = 4573
WAIT_S = 30.0


def _nothing_listens_on(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@contextlib.asynccontextmanager
async def running_bridge(tmp_path: Path) -> AsyncIterator[Bridge]:
    await require_redis()
    settings = BridgeSettings.build(
        ami_url="ami://ivrtest:ivrtest@127.0.0.1:5038",
        ami_ping_interval_s=1.0,
        database_url=f"sqlite:///{tmp_path / 'timeline.db'}",
        bus_url=REDIS_URL,
        stream=f"e2e-calls-{uuid.uuid4().hex[:10]}",
        outbox_path=tmp_path / "call-outbox.db",
        consumer_name="e2e",
        shutdown_grace_s=2.0,
    )
    bridge = Bridge(settings, ami_backoff=(0.2, 1.0))
    await bridge.start()
    try:
        assert bridge.ami is not None
        await bridge.ami.wait_connected(WAIT_S)
        yield bridge
    finally:
        await bridge.stop()
        await delete_prefix(f"{DEFAULT_PREFIX}{{{settings.stream}}}")


def store_of(bridge: Bridge) -> TimelineStore:
    assert bridge.timeline is not None
    return bridge.timeline.store


async def call_events(
    store: TimelineStore, phone: str, last: str = "call.ended", timeout_s: float = WAIT_S
) -> list[StoredEvent]:
    """The caller's events (oldest first) once the ``last`` kind is there."""
    deadline = time.monotonic() + timeout_s
    while True:
        for customer in await store.find_customers(Identity("phone", phone)):
            page = await store.timeline(customer.customer_id, limit=50)
            events = sorted(page.events, key=lambda e: e.seq)
            if any(e.event_type == last for e in events):
                return events
        if time.monotonic() > deadline:
            raise AssertionError(f"no {last} for {phone} on the timeline in {timeout_s} s")
        await asyncio.sleep(0.2)


async def test_menu_calls_appear_exactly_once_with_durations(
    asterisk: Testbed, tmp_path: Path
) -> None:
    if not _nothing_listens_on(FASTAGI_PORT):
        pytest.fail(f"something listens on 127.0.0.1:{FASTAGI_PORT}; the calls need it free")
    chooser, quitter = "+15557781001", "+15557781002"
    async with running_bridge(tmp_path) as bridge:
        store = store_of(bridge)
        assert bridge.ami is not None
        async with asyncio.timeout(WAIT_S):
            while not bridge.ami.server_filtered:  # noqa: ASYNC110 (a flag of the client)
                await asyncio.sleep(0.05)
        received = bridge.ami.subscribe(maxsize=10_000)  # every event Asterisk sends now
        chosen, quit_ = await asyncio.gather(
            run_sipp_call([("wait", 2500), ("dtmf", "6"), ("wait", 15000)], caller_id=chooser),
            run_sipp_call(caller_id=quitter, hangup_after_ms=3000),
        )
        assert chosen.ok and chosen.hung_up_by == "asterisk", chosen.describe()
        assert quit_.ok and quit_.hung_up_by == "caller", quit_.describe()

        events = await call_events(store, chooser)
        assert [e.event_type for e in events] == [
            "call.started", "call.ivr_fallback", "call.ivr_routed", "call.overflowed",
            "call.ended",
        ]  # fmt: skip
        started, fallback, routed, overflowed, ended = events
        call_id = started.data["call_id"]
        assert all(e.data["call_id"] == call_id for e in events)
        assert [e.data["seq"] for e in events] == [1, 2, 3, 4, 5]
        assert started.data["context"] == "from-trunk" and started.data["dialled"] == "1000"
        assert started.data["caller"] == chooser and started.channel == "voice"
        assert fallback.data["agi_status"] == "FAILURE"
        assert routed.intent == "billing" and routed.data["target"] == "queue:billing"
        assert routed.data["decision"] == "dialplan-fallback"
        assert overflowed.data["target"] == "queue:billing"
        assert ended.intent == "billing" and ended.data["cause"] == 16
        assert ended.data["talk_ms"] is None and ended.data["answered_by_agent"] is False
        assert 0 <= ended.data["ring_ms"] < 2000
        assert 2500 < ended.data["total_ms"] < 20_000
        assert "approximate" not in ended.data
        assert {e.event_id for e in events} == {
            f"ami:asterisk:{call_id}:{e.event_type}:1" for e in events
        }

        events = await call_events(store, quitter)
        assert [e.event_type for e in events] == ["call.started", "call.ivr_fallback", "call.ended"]
        ended = events[-1].data
        assert (ended["cause"], ended["cause_txt"]) == (0, "Unknown")
        assert 2500 < ended["total_ms"] < 6000 and ended["ring_ms"] < 2000

        assert bridge.consumer is not None and bridge.reader is not None
        assert bridge.consumer.committed == 8 and bridge.reader.resyncs == 1
        assert not bridge.reader.state.calls
        # Asterisk's filter sent only what the reader reads (unfiltered, these calls also
        # bring DeviceStateChange, SoftHangupRequest and ContactStatus events).
        names = [event.name for event in received.take(received.pending())]
        assert names and set(names) <= set(ASTERISK_EVENT_NAMES), names


def _kill_asterisk(testbed: Testbed) -> None:
    """SIGKILL the testbed's Asterisk (a crash: no Hangup events, no goodbye): the
    ``asterisk`` processes whose root is the testbed's chroot, as the script finds them."""
    root = os.path.realpath(testbed.chroot)
    pids = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            is_asterisk = proc.name.isdigit() and (proc / "comm").read_text() == "asterisk\n"
            if is_asterisk and os.readlink(proc / "root") == root:
                pids.append(int(proc.name))
    assert pids, "the testbed's Asterisk is not running"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


async def _restart(testbed: Testbed, *, crash: bool) -> None:
    try:
        if crash:
            _kill_asterisk(testbed)
        proc = await asyncio.to_thread(_testbed, "stop", timeout=120)
        assert proc.returncode == 0, proc.stderr
    finally:
        proc = await asyncio.to_thread(_testbed, "start", timeout=180)
        if proc.returncode != 0:
            _fail("start (after the call bridge's restart test)", proc)


@pytest.mark.parametrize("crash", [False, True], ids=["core-stop", "sigkill"])
async def test_asterisk_restart_under_a_live_call(
    asterisk: Testbed, tmp_path: Path, crash: bool
) -> None:
    """``core stop now`` hangs the calls up first: their Hangup events arrive (exact end).
    A crash (SIGKILL) sends nothing: after the re-login the resync closes the call it no
    longer finds (approximate end, no cause). A call after the restart is normal."""
    victim, after = ("+15557781013", "+15557781014") if crash else ("+15557781003", "+15557781004")
    async with running_bridge(tmp_path) as bridge:
        assert bridge.ami is not None and bridge.reader is not None
        store = store_of(bridge)
        doomed = asyncio.create_task(
            run_sipp_call(caller_id=victim, hangup_after_ms=60_000, timeout_s=40)
        )
        try:
            await call_events(store, victim, last="call.ivr_fallback")
            logins = bridge.ami.logins
            await _restart(asterisk, crash=crash)
            await bridge.ami.wait_connected(WAIT_S)
            events = await call_events(store, victim)
            assert bridge.ami.logins == logins + 1
        finally:
            doomed.cancel()
            await asyncio.gather(doomed, return_exceptions=True)
        assert [e.event_type for e in events] == ["call.started", "call.ivr_fallback", "call.ended"]
        ended = events[-1].data
        if crash:
            assert ended["approximate"] is True and ended["cause"] is None, ended
            assert len(ended["ended_between"]) == 2
        else:
            # Observed with Asterisk 22.10: ``core stop now`` hangs calls up with cause 0.
            assert "approximate" not in ended, ended
            assert (ended["cause"], ended["cause_txt"]) == (0, "Unknown"), ended
        await _until_resynced(bridge, 2)
        assert not bridge.reader.state.calls

        result = await run_sipp_call(caller_id=after, hangup_after_ms=2000)
        assert result.ok, result.describe()
        events = await call_events(store, after)
        assert [e.event_type for e in events] == ["call.started", "call.ivr_fallback", "call.ended"]
        assert "approximate" not in events[-1].data


async def _until_resynced(bridge: Bridge, count: int) -> None:
    assert bridge.reader is not None
    deadline = time.monotonic() + WAIT_S
    while bridge.reader.resyncs < count:
        assert time.monotonic() < deadline, f"resyncs: {bridge.reader.resyncs}"
        await asyncio.sleep(0.1)
