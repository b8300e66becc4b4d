"""The recorder's writer task outlives a broken spool: a spool directory removed under a
running engine is made again, and calls the spool cannot take (a file where the directory
was, a full disk) stay in memory and are written once the timeline answers. Before, the
first such error ended the writer task: every later call was lost and the engine's stop
re-raised it (the engine then hung on its open database threads)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from ivr_engine.flows.recorder import SPOOL_FILE, CallRecorder
from ivr_engine.flows.spool_files import REPLAY_FILE
from tests.unit.test_classic_agi_recorder import FakeDirectory, record


async def settle(recorder: CallRecorder, directory: FakeDirectory, written: int) -> None:
    for _ in range(200):
        if len(directory.written) >= written:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(directory.written)} of {written} calls written")


def started(directory: FakeDirectory, spool_dir: Path) -> CallRecorder:
    return CallRecorder(None, spool_dir, fast=directory, write_timeout_s=1, retry_interval_s=0.05)


def block_spool(spool_dir: Path) -> None:
    shutil.rmtree(spool_dir)
    spool_dir.write_text("not a directory")


async def one_call_nowhere_to_go(directory: FakeDirectory, spool_dir: Path) -> CallRecorder:
    """A running recorder whose spool directory became a file, with the timeline down, and
    one call submitted."""
    recorder = started(directory, spool_dir)
    await recorder.start()
    block_spool(spool_dir)
    directory.down = True
    recorder.submit(record("+15550001", "c1"))
    await asyncio.sleep(0.2)
    return recorder


async def test_a_removed_spool_directory_is_made_again(tmp_path: Path) -> None:
    directory = FakeDirectory({"+15550001": ["c1"]})
    spool_dir = tmp_path / "spool"
    recorder = started(directory, spool_dir)
    await recorder.start()
    await asyncio.sleep(0.1)  # a replay or two on the idle timer
    shutil.rmtree(spool_dir)
    directory.down = True
    recorder.submit(record("+15550001", "c1"))
    await asyncio.sleep(0.2)
    on_disk = [spool_dir / name for name in (SPOOL_FILE, REPLAY_FILE)]  # taken by a replay
    assert any("+15550001" in f.read_text() for f in on_disk if f.exists())
    directory.down = False
    await settle(recorder, directory, 1)  # replayed from the re-made spool
    await recorder.close(grace_s=1)
    assert [w.customer_id for w in directory.written] == ["c1"]


async def test_calls_the_spool_refuses_are_kept_and_written_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = FakeDirectory({"+15550001": ["c1"], "+15550002": ["c2"]})
    spool_dir = tmp_path / "spool"
    recorder = started(directory, spool_dir)
    await recorder.start()
    block_spool(spool_dir)  # neither the spool nor its directory can be made
    directory.down = True
    with caplog.at_level(logging.ERROR, logger="ivr_engine.flows.recorder"):
        recorder.submit(record("+15550001", "c1"))
        await asyncio.sleep(0.3)  # several retry intervals: logged once, task alive
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "kept in memory" in errors[0].getMessage()
    directory.down = False
    recorder.submit(record("+15550002", "c2"))
    await settle(recorder, directory, 2)
    await recorder.close(grace_s=1)
    assert sorted(w.customer_id for w in directory.written) == ["c1", "c2"]
    assert recorder.spooled == 0


async def test_kept_calls_are_written_when_idle(tmp_path: Path) -> None:
    directory = FakeDirectory({"+15550001": ["c1"]})
    recorder = await one_call_nowhere_to_go(directory, tmp_path / "spool")
    directory.down = False  # no new call arrives: the idle timer writes it
    await settle(recorder, directory, 1)
    await recorder.close(grace_s=1)


async def test_close_with_nowhere_to_put_the_calls_says_so_and_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = FakeDirectory({"+15550001": ["c1"]})
    recorder = await one_call_nowhere_to_go(directory, tmp_path / "spool")
    with caplog.at_level(logging.ERROR, logger="ivr_engine.flows.recorder"):
        await recorder.close(grace_s=0.2)
    assert any("1 call(s) LOST" in r.getMessage() for r in caplog.records)
