"""Two OS processes consuming one group from the real Redis while this test publishes.

Each worker prints a JSON line per batch *after* processing it and *before* acking it
(``t`` is ``time.monotonic()``, one clock for every process on the host). A worker started
with ``hold`` processes the batch that takes it past 1,000 events (about mid-way through
its share) and stops before the ack, as if about to crash; the test kills it there with
SIGKILL, so exactly that batch is processed but never acknowledged, and must be the only
thing the survivor processes a second time.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from crm_bridge.bus import BusSettings, RedisEventBus
from tests.component.test_bus_contract import STREAM, events
from tests.redis_support import REDIS_URL, delete_prefix, require_redis

pytestmark = pytest.mark.processes

REPO = Path(__file__).resolve().parents[2]
SETTINGS = BusSettings(partitions=8, lease_ms=1000, min_idle_ms=500, max_deliveries=5)
TOTAL = 5_000
WORKER = r"""
import asyncio, json, sys, time
from crm_bridge.bus import BusSettings, RedisEventBus

async def main(url, prefix, name, hold):
    settings = BusSettings(partitions=8, lease_ms=1000, min_idle_ms=500, max_deliveries=5)
    bus = RedisEventBus.from_url(url, settings, prefix=prefix)
    await bus.dead_letters("calls")  # connected before saying ready
    print(json.dumps({"ready": name}), flush=True)

    async def work():
        processed = 0
        async for batch in bus.consume("calls", "crm", name, batch=50, block_ms=200):
            processed += len(batch)
            doc = {
                "t": time.monotonic(),
                "ids": [d.event["event_id"] for d in batch],
                "keys": [d.event["partition_key"] for d in batch],
                "seqs": [d.event["seq"] for d in batch],
                "attempts": [d.attempt for d in batch],
            }
            if hold and processed >= 1000:
                print(json.dumps({"hold": doc}), flush=True)
                await asyncio.Event().wait()  # killed here: processed, never acked
            print(json.dumps({"batch": doc}), flush=True)
            await bus.ack(d.id for d in batch)

    task = asyncio.create_task(work())
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await bus.aclose()
    print(json.dumps({"done": name}), flush=True)

asyncio.run(main(*sys.argv[1:4], sys.argv[4] == "hold"))
"""


@dataclass
class Proc:
    name: str
    proc: asyncio.subprocess.Process
    batches: list[dict[str, Any]] = field(default_factory=list)
    held: dict[str, Any] | None = None
    done: bool = False
    reader: asyncio.Task[None] | None = None

    def processed(self) -> list[dict[str, Any]]:
        return self.batches + ([self.held] if self.held else [])

    def ids(self) -> list[str]:
        return [i for doc in self.processed() for i in doc["ids"]]


class Run:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.procs: list[Proc] = []
        self.changed = asyncio.Condition()

    async def start(self, name: str, *, hold: bool = False) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            REDIS_URL,
            self.prefix,
            name,
            "hold" if hold else "run",
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        ready = await proc.stdout.readline()
        if not ready.startswith(b'{"ready"'):
            assert proc.stderr is not None
            pytest.fail(f"worker {name} did not start: {ready!r} {await proc.stderr.read()!r}")
        worker = Proc(name, proc)
        worker.reader = asyncio.create_task(self._read(worker))
        self.procs.append(worker)
        return worker

    async def _read(self, worker: Proc) -> None:
        assert worker.proc.stdout is not None
        async for line in worker.proc.stdout:
            doc = json.loads(line)
            async with self.changed:
                if "batch" in doc:
                    worker.batches.append(doc["batch"])
                elif "hold" in doc:
                    worker.held = doc["hold"]
                elif "done" in doc:
                    worker.done = True
                self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], within_s: float = 20.0) -> None:
        async with asyncio.timeout(within_s), self.changed:
            await self.changed.wait_for(predicate)

    def all_ids(self) -> set[str]:
        return {i for worker in self.procs for i in worker.ids()}

    async def stop(self, worker: Proc) -> None:
        """Ask a worker to finish (it releases its partitions) and check it exited cleanly."""
        assert worker.proc.stdin is not None and worker.proc.stderr is not None
        worker.proc.stdin.write(b"stop\n")
        await worker.proc.stdin.drain()
        async with asyncio.timeout(10):
            assert worker.reader is not None
            await worker.reader  # to the end of its output
            err = await worker.proc.stderr.read()
            assert await worker.proc.wait() == 0, err.decode()
        assert worker.done

    async def cleanup(self) -> None:
        for worker in self.procs:
            if worker.proc.returncode is None:
                worker.proc.kill()
                await worker.proc.wait()
        readers = [worker.reader for worker in self.procs if worker.reader is not None]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


@pytest.fixture
async def run() -> AsyncIterator[Run]:
    await require_redis()
    prefix = f"test:bus-{uuid.uuid4().hex}:"
    runner = Run(prefix)
    try:
        yield runner
    finally:
        await runner.cleanup()
        await delete_prefix(prefix)


async def publish_paced(prefix: str, published: list[dict[str, Any]], chunk: int = 250) -> None:
    """Publish in pipelined chunks, letting the consumers work in between (load shaping)."""
    bus = RedisEventBus.from_url(REDIS_URL, SETTINGS, prefix=prefix)
    try:
        for start in range(0, len(published), chunk):
            await bus.publish(STREAM, published[start : start + chunk])
            await asyncio.sleep(0.02)
    finally:
        await bus.aclose()


def first_processings_in_time_order(procs: list[Proc]) -> list[tuple[str, int]]:
    """(call, seq) of every first processing, ordered by the shared monotonic clock."""
    rows = []
    for worker in procs:
        for doc in worker.processed():
            for index, (event_id, key, seq) in enumerate(
                zip(doc["ids"], doc["keys"], doc["seqs"], strict=True)
            ):
                rows.append((doc["t"], index, event_id, key, seq))
    rows.sort()
    seen: set[str] = set()
    out = []
    for _, _, event_id, key, seq in rows:
        if event_id not in seen:
            seen.add(event_id)
            out.append((key, seq))
    return out


def assert_per_call_order(procs: list[Proc]) -> None:
    last: dict[str, int] = {}
    for key, seq in first_processings_in_time_order(procs):
        assert seq > last.get(key, -1), f"{key}: seq {seq} processed after {last[key]}"
        last[key] = seq


async def test_two_processes_process_every_event_exactly_once(run: Run) -> None:
    published = events(TOTAL, keys=200)
    expected = {e["event_id"] for e in published}
    a, b = await run.start("a"), await run.start("b")
    await publish_paced(run.prefix, published)
    await run.wait_for(lambda: run.all_ids() >= expected)
    await run.stop(a)
    await run.stop(b)
    counts = Counter(a.ids() + b.ids())
    assert set(counts) == expected  # no loss, nothing unexpected
    assert [i for i, n in counts.items() if n > 1] == []  # no duplicates
    assert a.ids() and b.ids()  # the group's work was shared
    assert_per_call_order([a, b])


async def test_a_killed_process_loses_nothing_and_only_its_unacked_batch_repeats(
    run: Run,
) -> None:
    published = events(TOTAL, keys=200)
    expected = {e["event_id"] for e in published}
    doomed, survivor = await run.start("doomed", hold=True), await run.start("survivor")
    publisher = asyncio.create_task(publish_paced(run.prefix, published))
    await run.wait_for(lambda: doomed.held is not None)
    doomed.proc.send_signal(signal.SIGKILL)
    await doomed.proc.wait()
    await publisher
    assert doomed.held is not None
    unacked = set(doomed.held["ids"])
    assert unacked and len(doomed.ids()) >= 1000
    await run.wait_for(lambda: run.all_ids() >= expected and unacked <= set(survivor.ids()))
    await run.stop(survivor)
    counts = Counter(doomed.ids() + survivor.ids())
    assert set(counts) == expected  # nothing lost
    assert {i for i, n in counts.items() if n > 1} == unacked  # exactly the unacked batch
    assert max(counts.values()) == 2
    assert len(set(survivor.ids())) == len(survivor.ids())  # the survivor never repeats
    redelivered = {
        i: n
        for doc in survivor.processed()
        for i, n in zip(doc["ids"], doc["attempts"], strict=True)
        if i in unacked
    }
    assert set(redelivered.values()) == {2}
    assert_per_call_order([doomed, survivor])
