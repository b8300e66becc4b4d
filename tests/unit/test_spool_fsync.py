"""What the spool hands to the disk is durable before the engine relies on it: a power cut
(which loses the page cache, unlike a crash) can then repeat calls, never lose them.
A power cut cannot be simulated here, so these tests log ``os.fsync`` (of which file or
directory) with the renames and removals around it, and check the order: each append is
``fsync``ed before it returns (the recorder then forgets its calls), a new file's directory
too; the replay file before the spool it copies is removed; the offset before it is
renamed into place; a removal whose order matters before the next step. Before, nothing in
the spool was ever ``fsync``ed."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.flows.call_record import to_write
from ivr_engine.flows.recorder import REJECTED_FILE, SPOOL_FILE, CallRecorder
from ivr_engine.flows.spool_files import REPLAY_FILE, append_to_spool, replace_file, take_spool
from ivr_engine.flows.spool_lines import write_to_json
from ivr_engine.flows.spool_replay import OFFSET_FILE, begin_replay, finish_chunk, read_chunk
from ivr_engine.ports import CustomerWrite
from tests.component.recorder_support import record

Op = tuple[str, ...]


@pytest.fixture
def ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Op]:
    """``fsync``s, renames and removals in ``tmp_path`` (names relative to it; the
    directory itself is "."), in order. The real calls still run."""
    log: list[Op] = []
    fsync, replace, unlink = os.fsync, os.replace, os.unlink

    def name(path: str | Path) -> str:
        return os.path.relpath(path, tmp_path)

    def logged_fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.startswith(str(tmp_path)):
            log.append(("fsync", name(path)))
        fsync(fd)

    def logged_replace(src: str | Path, dst: str | Path, **kw: object) -> None:
        log.append(("replace", name(src), name(dst)))
        replace(src, dst, **kw)  # type: ignore[arg-type]

    def logged_unlink(path: str | Path, **kw: object) -> None:
        log.append(("unlink", name(path)))
        unlink(path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", logged_fsync)
    monkeypatch.setattr(os, "replace", logged_replace)
    monkeypatch.setattr(os, "unlink", logged_unlink)
    return log


LINE = b'{"customer_id":"c1","phone":"+15550001","events":[],"fields":[]}\n'


def test_an_append_is_durable_when_it_returns_and_so_is_a_new_file(
    tmp_path: Path, ops: list[Op]
) -> None:
    spool = tmp_path / "spool" / SPOOL_FILE
    spool.parent.mkdir()  # a new spool directory (a first start)
    append_to_spool(spool, LINE)
    # the file, its entry in the spool directory, that directory's entry
    assert ops == [("fsync", f"spool/{SPOOL_FILE}"), ("fsync", "spool"), ("fsync", ".")]
    ops.clear()
    append_to_spool(spool, LINE)
    assert ops == [("fsync", f"spool/{SPOOL_FILE}")]  # the entries are there already


def test_an_append_the_disk_cannot_make_durable_is_taken_back_and_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync fails (EIO: the data may never reach the disk): the caller must know, and
    keep the calls (the recorder keeps them in memory and retries), not count them spooled."""
    spool = tmp_path / SPOOL_FILE
    spool.write_bytes(LINE)

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="Input/output"):
        append_to_spool(spool, b'{"next":2}\n')
    assert spool.read_bytes() == LINE


class Down:
    """The database is down: every write raises."""

    async def write(self, batch: Sequence[CustomerWrite]) -> set[str]:
        raise TimelineUnavailable("down (standing for an unreachable database)")

    async def phone_owners(self, phones: Sequence[str]) -> dict[str, list[str]]:
        raise TimelineUnavailable("down")

    async def create_customers(
        self, phones: Sequence[str | None], keys: Sequence[str | None] = ()
    ) -> list[str]:
        raise TimelineUnavailable("down")


async def test_a_call_the_recorder_counts_as_spooled_was_fsynced(
    tmp_path: Path, ops: list[Op]
) -> None:
    recorder = CallRecorder(None, tmp_path, fast=Down(), retry_interval_s=60)
    await recorder.start()
    try:
        recorder.submit(record("+15550001"))
        for _ in range(250):
            if recorder.spooled:
                break
            await asyncio.sleep(0.02)
        assert recorder.spooled == 1
        assert ("fsync", SPOOL_FILE) in ops
    finally:
        await recorder.close(grace_s=0.5)


def test_taking_the_spool_onto_a_replay_file_makes_the_copy_durable_before_removing_it(
    tmp_path: Path, ops: list[Op]
) -> None:
    (tmp_path / REPLAY_FILE).write_bytes(LINE)
    (tmp_path / SPOOL_FILE).write_bytes(LINE)
    take_spool(tmp_path / SPOOL_FILE)
    assert ops == [("fsync", REPLAY_FILE), ("unlink", SPOOL_FILE), ("fsync", ".")]


def test_taking_the_spool_as_the_replay_file_makes_the_rename_durable(
    tmp_path: Path, ops: list[Op]
) -> None:
    (tmp_path / SPOOL_FILE).write_bytes(LINE)
    take_spool(tmp_path / SPOOL_FILE)
    assert ops == [("replace", SPOOL_FILE, REPLAY_FILE), ("fsync", ".")]


def test_the_offset_is_durable_before_it_replaces_the_old_one_and_after(
    tmp_path: Path, ops: list[Op]
) -> None:
    """Else a power cut may leave an empty offset file (replayed from the start: every call
    again) where the old or the new offset should be."""
    replace_file(tmp_path / OFFSET_FILE, b"123\n")
    new = OFFSET_FILE + ".new"
    assert ops == [("fsync", new), ("replace", new, OFFSET_FILE), ("fsync", ".")]


def test_rejected_lines_are_durable_before_the_offset_moves_past_them(
    tmp_path: Path, ops: list[Op]
) -> None:
    good = write_to_json(to_write(record("+15550001"))).encode() + b"\n"
    (tmp_path / REPLAY_FILE).write_bytes(b"garbage\n" + good + good)
    chunk = read_chunk(tmp_path / SPOOL_FILE, 0, 2)
    assert chunk.unreadable == [b"garbage"] and not chunk.last
    finish_chunk(tmp_path / SPOOL_FILE, chunk)
    new = OFFSET_FILE + ".new"
    assert ops == [
        ("fsync", REJECTED_FILE),
        ("fsync", "."),  # the rejected file is new (then ".." too: not logged)
        ("fsync", new),
        ("replace", new, OFFSET_FILE),
        ("fsync", "."),
    ]


def test_a_finished_replay_file_goes_after_its_offset_each_removal_durable(
    tmp_path: Path, ops: list[Op]
) -> None:
    """A power cut must not keep the offset while the replay file is gone: beside the next
    replay file it would skip that file's first lines."""
    (tmp_path / REPLAY_FILE).write_bytes(LINE)
    (tmp_path / OFFSET_FILE).write_bytes(b"0\n")
    finish_chunk(tmp_path / SPOOL_FILE, read_chunk(tmp_path / SPOOL_FILE, 0, 10))
    assert ops == [
        ("unlink", OFFSET_FILE),
        ("fsync", "."),
        ("unlink", REPLAY_FILE),
        ("fsync", "."),
    ]


def test_a_stale_offset_is_gone_for_good_before_a_new_replay_file_exists(
    tmp_path: Path, ops: list[Op]
) -> None:
    (tmp_path / OFFSET_FILE).write_bytes(b"40\n")  # its replay file is gone
    (tmp_path / SPOOL_FILE).write_bytes(LINE)
    assert begin_replay(tmp_path / SPOOL_FILE) == 0
    assert ops == [
        ("unlink", OFFSET_FILE),
        ("fsync", "."),
        ("replace", SPOOL_FILE, REPLAY_FILE),
        ("fsync", "."),
    ]
