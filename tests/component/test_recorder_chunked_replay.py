"""A large spool (a long outage) is replayed a chunk of at most ``max_batch`` calls at a
time, parsed on a worker thread, with its progress kept on disk, and calls queued
meanwhile are written between chunks (real SQLite). Before, the replay read the whole
spool, parsed it on the event loop (100 000 calls: an 8 s stall) and sent it as one
write, which past some size always exceeded the write timeout and was spooled again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from ivr_engine.flows import spool_lines
from ivr_engine.flows.call_record import CallWrite, to_write
from ivr_engine.flows.recorder import SPOOL_FILE
from ivr_engine.flows.spool_files import REPLAY_FILE
from ivr_engine.flows.spool_lines import write_to_json
from ivr_engine.ports import CustomerWrite
from ivr_engine.timeline import FastCallWriter
from tests.component.recorder_support import (
    DOWN,
    Switchable,
    count,
    event_ids,
    plain_id,
    record,
    recorder,
    until,
)


class Logged(Switchable):
    """Records the event ids of each write; from write number ``fail_from`` on, the
    database is down (``hang``: the write never returns, as a process killed mid-write)."""

    def __init__(self, real: FastCallWriter, fail_from: int | None = None) -> None:
        super().__init__(real)
        self.ids: list[list[str]] = []
        self.fail_from = fail_from
        self.hang = False

    async def write(self, batch: Sequence[CustomerWrite]) -> set[str]:
        self.ids.append([plain_id(e.event_id) for w in batch for e in w.events])
        if self.fail_from is not None and len(self.ids) > self.fail_from:
            if self.hang:
                await asyncio.Event().wait()
            raise DOWN
        return await super().write(batch)


def spool(spool_dir: Path, calls: int, name: str = SPOOL_FILE) -> list[str]:
    """A spool of ``calls`` calls; returns their event ids, in order."""
    spool_dir.mkdir(exist_ok=True)
    ids = [f"voice:s{n}:ivr" for n in range(calls)]
    lines = (write_to_json(to_write(record(call_id=f"s{n}"))) + "\n" for n in range(calls))
    (spool_dir / name).write_text("".join(lines))
    return ids


def left_on_disk(spool_dir: Path) -> list[str]:
    return sorted(p.name for p in spool_dir.iterdir() if not p.name.endswith(".lock"))


async def test_a_large_spool_is_written_max_batch_calls_at_a_time_off_the_loop(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed_on: set[bool] = set()  # whether a spool line was parsed on the event loop thread
    parse = spool_lines.write_from_json

    def watched(line: str) -> CallWrite:
        parsed_on.add(threading.current_thread() is threading.main_thread())
        return parse(line)

    monkeypatch.setattr(spool_lines, "write_from_json", watched)
    ids = spool(tmp_path / "spool", 3000)
    real = FastCallWriter(sqlite_url)
    writer = Logged(real)
    rec = recorder(writer, tmp_path / "spool", max_batch=64)
    lags: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - before - 0.005)

    ticking = asyncio.create_task(ticker())
    try:
        assert await rec.replay_spool() == 3000
    finally:
        ticking.cancel()
        await rec.close(grace_s=1)
        await real.close()
    assert max(len(batch) for batch in writer.ids) <= 64
    assert sorted(i for batch in writer.ids for i in batch) == sorted(ids)  # each once
    assert parsed_on == {False}
    assert max(lags) < 1.0  # generous: a noisy machine, not a measurement
    assert await count(sqlite_url, "timeline_events") == 3000
    assert left_on_disk(tmp_path / "spool") == []


@pytest.mark.parametrize("cut", ["database down", "killed mid-write"])
async def test_a_replay_cut_short_resumes_after_the_chunks_it_wrote(
    sqlite_url: str, tmp_path: Path, cut: str
) -> None:
    """The replay writes 2 chunks of 10, then the database goes down (or the process
    dies). A new recorder (nothing in memory) sends only the 30 calls left."""
    spool_dir = tmp_path / "spool"
    ids = spool(spool_dir, 50)
    real = FastCallWriter(sqlite_url)
    first = Logged(real, fail_from=2)
    first.hang = cut == "killed mid-write"
    rec = recorder(first, spool_dir, max_batch=10)
    if first.hang:
        replay = asyncio.ensure_future(rec.replay_spool())
        await until(lambda: _true(len(first.ids) == 3))
        replay.cancel()
        await asyncio.gather(replay, return_exceptions=True)
    else:
        assert await rec.replay_spool() == 20
    await rec.close(grace_s=1)
    assert await count(sqlite_url, "timeline_events") == 20
    assert REPLAY_FILE in left_on_disk(spool_dir)

    second = Logged(real)
    again = recorder(second, spool_dir, max_batch=10)
    try:
        assert await again.replay_spool() == 30
        assert await again.replay_spool() == 0  # drained: nothing sent again
    finally:
        await again.close(grace_s=1)
        await real.close()
    assert [i for batch in second.ids for i in batch] == ids[20:]
    assert await event_ids(sqlite_url) == sorted(ids)
    assert left_on_disk(spool_dir) == []


async def test_calls_queued_during_a_long_replay_are_written_between_its_chunks(
    sqlite_url: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    ids = spool(spool_dir, 200)
    real = FastCallWriter(sqlite_url)
    writer = Logged(real)
    rec = recorder(writer, spool_dir, max_batch=10)
    rec.submit(record(call_id="live"))  # a call ended as the engine starts
    await rec.start()
    try:
        await until(lambda: _written(sqlite_url, 201))
    finally:
        await rec.close(grace_s=1)
        await real.close()
    batch_of = {i: n for n, batch in enumerate(writer.ids) for i in batch}
    assert batch_of["voice:live:ivr"] < batch_of[ids[-1]]  # not behind the whole spool


async def _written(url: str, calls: int) -> bool:
    return await count(url, "timeline_events") == calls


async def _true(value: bool) -> bool:
    return value
