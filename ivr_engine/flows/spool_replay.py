"""The replay file, read a chunk at a time (blocking file work: run it on a worker thread).

A long outage leaves a large spool (100 000 calls: ~76 MB). It is never read whole: the
replay reads up to ``max_lines`` lines from a byte offset, parses them (``spool_lines``)
and, once they are written (or rejected), records the offset after them in
``calls.replaying.offset``. A failure or a crash mid-replay leaves only the lines past
that offset to replay (a chunk cut short is written again: writes are idempotent).

The replay file only grows, at its end (``take_spool``), so an offset stays valid. When
the replay file is done, the offset file is removed first: a crash between the two
removals replays the file again from its start (duplicates, no loss), whereas a stale
offset left beside a new replay file would skip its first lines. Each removal is made
durable (the directory ``fsync``ed) before the next step, so a power cut keeps that order.

A line is at most ``max_line`` bytes (``spool_max_line_bytes``, 1 MiB: a call's line is
~1 KB). A longer one (a damaged file: garbage with no newline, a runaway line) is never read
whole: it is read in blocks of ``SKIP_BLOCK`` to its end, and goes to the rejected file as
a note line (``#``: its offset and length) and its first ``KEPT_PREFIX`` bytes; it is alone
in its chunk, so it is moved aside even while the database is down. A chunk also stops
once it holds ``max_line`` bytes: memory stays within a few ``max_line`` whatever the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ivr_engine.flows.call_record import CallWrite
from ivr_engine.flows.spool_files import (
    REJECTED_FILE,
    REPLAY_FILE,
    SPOOL_LOCK_FILE,
    FileLock,
    append_bytes,
    fsync_dir,
    replace_file,
    take_spool,
)
from ivr_engine.flows.spool_lines import parse_spool_lines

OFFSET_FILE = "calls.replaying.offset"  # the replay file's bytes already written
MAX_LINE = 1 << 20  # default ``spool_max_line_bytes``
SKIP_BLOCK = 64 * 1024  # an over-long line is read this much at a time, to its end
KEPT_PREFIX = 64 * 1024  # of an over-long line, kept in the rejected file


@dataclass(frozen=True)
class Chunk:
    """Lines ``start``..``end`` (bytes) of the replay file: their calls, and the lines that
    are not calls (as they were). ``last``: nothing follows in the file."""

    start: int
    end: int
    size: int  # the replay file's
    calls: list[CallWrite]
    unreadable: list[bytes]  # an over-long line: its note line, then its kept prefix
    last: bool
    too_long: int = 0  # lines over ``max_line`` among ``unreadable``


def begin_replay(spool: Path) -> int | None:
    """Move the spool's lines to the replay file; returns where the replay resumes (None:
    nothing to replay). The caller holds the replay lock."""
    replay, offset = spool.with_name(REPLAY_FILE), spool.with_name(OFFSET_FILE)
    if not replay.exists() and offset.exists():  # an offset is only for its replay file
        offset.unlink(missing_ok=True)
        fsync_dir(spool.parent)  # gone for good before a new replay file can be
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


def read_chunk(spool: Path, start: int, max_lines: int, max_line: int = MAX_LINE) -> Chunk:
    """Up to ``max_lines`` lines of the replay file from byte ``start``, parsed; fewer once
    they hold ``max_line`` bytes. A line over ``max_line`` bytes is a chunk of its own."""
    lines: list[bytes] = []
    held = 0
    too_long: bytes | None = None
    try:
        with spool.with_name(REPLAY_FILE).open("rb") as replay:
            replay.seek(start)
            while len(lines) < max_lines and held < max_line:
                line = replay.readline(max_line + 1)  # never more, whatever the file holds
                if not line:
                    break
                if len(line) > max_line and not line.endswith(b"\n"):
                    if lines:  # alone in its chunk: read again as the next chunk's first
                        replay.seek(-len(line), os.SEEK_CUR)
                    else:
                        too_long = _skip_long_line(replay, start, line, max_line)
                    break
                lines.append(line)
                held += len(line)
            end = replay.tell()
            size = os.fstat(replay.fileno()).st_size
    except FileNotFoundError:
        return Chunk(start, start, start, [], [], True)
    if too_long is not None:
        return Chunk(start, end, size, [], [too_long], end >= size, too_long=1)
    calls, unreadable = parse_spool_lines(lines)
    return Chunk(start, end, size, calls, unreadable, end >= size)


def _skip_long_line(replay: BinaryIO, start: int, head: bytes, max_line: int) -> bytes:
    """Read the rest of the over-long line that begins with ``head`` (a block at a time,
    nothing kept); returns what the rejected file keeps of it: a note and a prefix."""
    length = len(head)
    while True:
        block = replay.readline(SKIP_BLOCK)
        length += len(block)
        if not block or block.endswith(b"\n"):
            break
    if block.endswith(b"\n"):
        length -= 1
    kept = head[: min(KEPT_PREFIX, max_line)]
    note = (
        f"# spool line too long: {length} bytes at byte {start} of {REPLAY_FILE}, over "
        f"spool_max_line_bytes ({max_line}); only its first {len(kept)} bytes are "
        "kept, on the next line"
    )
    return note.encode() + b"\n" + kept


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
        fsync_dir(spool.parent)
        spool.with_name(REPLAY_FILE).unlink(missing_ok=True)
        fsync_dir(spool.parent)  # else a power cut may bring it back: replayed again
    else:
        replace_file(offset, b"%d\n" % chunk.end)  # durable: no more than a chunk again
