"""The replay file, read a chunk at a time (blocking file work: run it on a worker thread).

A long outage leaves a large spool (100 000 calls: ~76 MB). It is never read whole: the
replay reads up to ``max_lines`` lines from a byte offset, parses them (``spool_lines``)
and, once they are written (or rejected), records the offset after them in
``calls.replaying.offset``. A failure or a crash mid-replay leaves only the lines past
that offset to replay (a chunk cut short is written again: writes are idempotent).

The replay file only grows, at its end (``take_spool``), so an offset stays valid. When
the replay file is done, the offset file is removed first: a crash between the two
removals replays the file again from its start (duplicates, no loss), whereas a stale
offset left beside a new replay file would skip its first lines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ivr_engine.flows.call_record import CallWrite
from ivr_engine.flows.spool_files import (
    REJECTED_FILE,
    REPLAY_FILE,
    SPOOL_LOCK_FILE,
    FileLock,
    append_bytes,
    replace_file,
    take_spool,
)
from ivr_engine.flows.spool_lines import parse_spool_lines

OFFSET_FILE = "calls.replaying.offset"  # the replay file's bytes already written


@dataclass(frozen=True)
class Chunk:
    """Lines ``start``..``end`` (bytes) of the replay file: their calls, and the lines that
    are not calls (as they were). ``last``: nothing follows in the file."""

    start: int
    end: int
    size: int  # the replay file's
    calls: list[CallWrite]
    unreadable: list[bytes]
    last: bool


def begin_replay(spool: Path) -> int | None:
    """Move the spool's lines to the replay file; returns where the replay resumes (None:
    nothing to replay). The caller holds the replay lock."""
    replay, offset = spool.with_name(REPLAY_FILE), spool.with_name(OFFSET_FILE)
    if not replay.exists():  # an offset is only ever for the replay file it was made on
        offset.unlink(missing_ok=True)
    take_spool(spool)
    try:
        size = replay.stat().st_size
    except FileNotFoundError:
        return None
    try:
        done = int(offset.read_bytes())
    except (FileNotFoundError, ValueError):
        return 0
    return done if 0 <= done <= size else 0  # a damaged offset: all again, no loss


def read_chunk(spool: Path, start: int, max_lines: int) -> Chunk:
    """Up to ``max_lines`` lines of the replay file from byte ``start``, parsed."""
    lines: list[bytes] = []
    try:
        with spool.with_name(REPLAY_FILE).open("rb") as replay:
            replay.seek(start)
            while len(lines) < max_lines:
                line = replay.readline()
                if not line:
                    break
                lines.append(line)
            end = replay.tell()
            size = os.fstat(replay.fileno()).st_size
    except FileNotFoundError:
        return Chunk(start, start, start, [], [], True)
    calls, unreadable = parse_spool_lines(lines)
    return Chunk(start, end, size, calls, unreadable, end >= size)


def finish_chunk(spool: Path, chunk: Chunk) -> None:
    """The chunk is written: keep its unreadable lines in the rejected file and move the
    offset past it (the replay file and the offset go once the file is done)."""
    if chunk.unreadable:
        rejected = b"".join(line.rstrip(b"\n") + b"\n" for line in chunk.unreadable)
        with FileLock(spool.with_name(SPOOL_LOCK_FILE)):
            append_bytes(spool.with_name(REJECTED_FILE), rejected)
    offset = spool.with_name(OFFSET_FILE)
    if chunk.last:
        offset.unlink(missing_ok=True)  # first: see the module's docstring
        spool.with_name(REPLAY_FILE).unlink(missing_ok=True)
    else:
        replace_file(offset, b"%d\n" % chunk.end)
