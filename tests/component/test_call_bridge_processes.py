"""The bridge's reader as a real OS process (``python -m crm_bridge.calls --roles reader``),
killed with SIGKILL twice and restarted, while this test plays Asterisk (fake AMI peer) and
runs the consumer (real Redis, real SQLite timeline).

1. Bus unreachable: every call event piles up in the outbox. SIGKILL. The outbox file still
   holds all of them, and the live calls' state.
2. Restarted with the bus behind a proxy that freezes after ~half the rows went out: the
   batch that crosses the limit reaches Redis but its reply never comes back, so those rows
   are on the bus AND still in the outbox. SIGKILL.
3. Restarted with the bus direct: the rest goes out (that batch a second time); then the
   live calls hang up (their state came back from the outbox) and more calls happen.

The timeline must then hold exactly the events an uninterrupted bridge would have written
for the same AMI events (ids, times, durations), each once, although some were consumed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from crm_bridge.bus import DEFAULT_PREFIX
from crm_bridge.calls import BridgeSettings
from ivr_engine.telephony.ami import AmiEvent
from ivr_engine.timeline.timestamps import sqlite_timestamp
from tests.component.test_ami_fake_peer import FakeAmi
from tests.component.test_call_bridge_fakes import FakeAsterisk
from tests.component.test_call_bridge_flow import running
from tests.component.test_call_bridge_normalise import run
from tests.redis_support import REDIS_URL, delete_prefix

pytestmark = pytest.mark.processes

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 20.0


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class FreezingProxy:
    """A TCP relay to Redis that, once ``limit`` events went through (counted by their
    ``"event_id":`` key, whether sent as XADDs or as one script call), forwards nothing
    more in either direction (so the last batch's replies are lost)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.xadds = 0
        self.frozen = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = urlsplit(REDIS_URL)
        up_reader, up_writer = await asyncio.open_connection(upstream.hostname, upstream.port)
        self._writers += [writer, up_writer]
        task = asyncio.create_task(self._pump(up_reader, writer, count=False))
        self._tasks.add(task)
        await self._pump(reader, up_writer, count=True)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                if self.frozen.is_set():
                    continue
                writer.write(chunk)
                if count:
                    self.xadds += chunk.count(b'"event_id":')
                    if self.xadds >= self.limit:
                        self.frozen.set()


@contextlib.asynccontextmanager
async def reader_process(
    peer: FakeAmi, bus_url: str, outbox: Path, stream: str, tmp_path: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    ready = tmp_path / f"ready-{uuid.uuid4().hex[:6]}"
    log = (tmp_path / "bridge.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crm_bridge.calls", "--roles", "reader",
        "--ami-url", f"ami://{peer.username}:{peer.secret}@127.0.0.1:{peer.port}",
        "--bus-url", bus_url, "--outbox", str(outbox), "--stream", stream,
        "--publish-batch", "20", "--ready-file", str(ready),
        cwd=REPO, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
    )  # fmt: skip
    try:
        await peer.next_login()
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
        log.close()


def _count(path: Path, table: str) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL


async def test_sigkilled_reader_loses_nothing_and_writes_nothing_twice(
    sqlite_url: str, tmp_path: Path
) -> None:
    stream = f"calls-{uuid.uuid4().hex[:12]}"
    outbox = tmp_path / "outbox.db"
    timeline_file = Path(sqlite_url.removeprefix("sqlite:///"))
    consumer_settings = BridgeSettings.build(
        roles=frozenset({"consumer"}), database_url=sqlite_url, bus_url=REDIS_URL,
        stream=stream, consumer_name="c1", shutdown_grace_s=0.5,
    )  # fmt: skip
    try:
        async with FakeAmi() as peer, running(consumer_settings) as consumer:
            fake = FakeAsterisk(peer)
            sw = fake.switch
            # 1. bus unreachable: everything waits in the outbox; SIGKILL
            dead_bus = f"redis://127.0.0.1:{unused_port()}/0"
            async with reader_process(peer, dead_bus, outbox, stream, tmp_path) as proc:
                for n in range(40):
                    sw.agent_call(f"+1555300{n:04d}", hold_s=3)
                live = []
                for n in range(10):
                    ch = sw.inbound(f"+1555301{n:04d}")
                    sw.advance(1)
                    sw.answer(ch)
                    sw.routed(ch, "billing", "queue:billing")
                    live.append(ch)
                await fake.flush()
                await _until(lambda: _count(outbox, "outbox") == 300, "300 rows in the outbox")
                await kill(proc)
            assert _count(outbox, "outbox") == 300 and _count(outbox, "live_calls") == 10

            # 2. half of it published, the crossing batch's replies lost; SIGKILL
            async with FreezingProxy(limit=150) as proxy:
                proxy_url = f"redis://127.0.0.1:{proxy.port}/0"
                async with reader_process(peer, proxy_url, outbox, stream, tmp_path) as proc:
                    async with asyncio.timeout(WAIT_S):
                        await proxy.frozen.wait()
                    assert consumer.consumer is not None
                    await consumer.consumer.wait_committed(150, WAIT_S)
                    await kill(proc)
            left = _count(outbox, "outbox")
            assert 20 <= left < 300, left  # at least the crossing batch is still there

            # 3. direct bus: the rest goes out; the live calls end; more calls
            async with reader_process(peer, REDIS_URL, outbox, stream, tmp_path):
                sw.advance(30)
                for ch in live:
                    sw.hangup(ch)
                for n in range(20):
                    sw.agent_call(f"+1555302{n:04d}")
                await fake.flush()
                expected = run([AmiEvent(tuple(p)) for p in fake.delivered])
                assert len(expected) == 300 + 10 + 20 * 5 and not fake.lost
                total = len(expected)
                await consumer.consumer.wait_committed(total, WAIT_S)
                await _until(lambda: _count(timeline_file, "timeline_events") >= total, "rows")
            assert consumer.consumer.committed > total  # some were consumed twice ...
            stored = _stored(timeline_file)  # ... and written once
            assert sorted(stored) == sorted(e.event_id for e in expected)
            for event in expected:
                occurred_at, data = stored[event.event_id]
                assert occurred_at == sqlite_timestamp(event.occurred_at), event.event_id
                assert data == json.loads(json.dumps(event.to_timeline("-").data)), event.event_id
            # The live calls' state came back from the outbox twice: exact durations.
            ends = {e.call_id: e.event_id for e in expected if e.kind.value == "call.ended"}
            for n, ch in enumerate(live):
                data = stored[ends[ch.uniqueid]][1]
                assert (data["ring_ms"], data["total_ms"]) == (1000, (40 - n) * 1000)
                assert "approximate" not in data
    finally:
        await delete_prefix(f"{DEFAULT_PREFIX}{{{stream}}}")


def _stored(path: Path) -> dict[str, tuple[str, Any]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT event_id, occurred_at, data FROM timeline_events").fetchall()
    finally:
        db.close()
    return {row[0]: (row[1], json.loads(row[2])) for row in rows}
