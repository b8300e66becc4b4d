"""A spool line too long to be a call (a damaged spool: garbage without a newline, a
runaway line) is never read whole: it goes to ``calls.rejected.jsonl`` as a note and a
bounded prefix, alone in its chunk (so also while the database is down), and the replay
goes on with the next line. Before, ``readline()`` read it whole into memory (a 1 GB line:
1 GB, then copied again into the rejected file)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import pytest

from ivr_engine.domain.errors import ConfigError, TimelineUnavailable
from ivr_engine.flows.recorder import REJECTED_FILE, SPOOL_FILE, CallRecorder
from ivr_engine.flows.spool_files import REPLAY_FILE
from ivr_engine.flows.spool_replay import OFFSET_FILE, read_chunk
from ivr_engine.ports import CustomerWrite
from ivr_engine.settings import load_settings

MAX_LINE = 1 << 20  # spool_max_line_bytes' default
KEPT_PREFIX = 64 << 10  # what the rejected file keeps of an over-long line
HUGE = 64 << 20  # 64 MiB: 64 times the default limit


def call(n: int, pad: int = 0) -> bytes:
    """A spool line of a call (``pad`` spaces inside the JSON: still the same call)."""
    text = f'{{"customer_id":"c{n}","phone":"+1555000{n}","events":[],"fields":[]'
    return text.encode() + b" " * pad + b"}\n"


class Recording:
    """A fast writer that records the customer ids it wrote; ``down``: it raises."""

    def __init__(self, down: bool = False) -> None:
        self.written: list[str | None] = []
        self.down = down

    async def write(self, batch: Sequence[CustomerWrite]) -> set[str]:
        if self.down:
            raise TimelineUnavailable("down (standing for an unreachable database)")
        self.written.extend(w.customer_id for w in batch)
        return set()

    async def phone_owners(self, phones: Sequence[str]) -> dict[str, list[str]]:
        return {}

    async def create_customers(
        self, phones: Sequence[str | None], keys: Sequence[str | None] = ()
    ) -> list[str]:
        return []


def write_huge(out: Path, before: bytes, size: int, after: bytes) -> None:
    """``before``, a line of ``size`` bytes (as a crash's garbage might start: a call's
    beginning), then ``after`` (b"": no newline, the file ends in the line)."""
    head = b'{"customer_id":"runaway","phone":"'
    with out.open("wb") as f:
        f.write(before + head)
        block = b"7" * (1 << 20)
        left = size - len(head)
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)
        f.write(after)


@pytest.mark.parametrize(
    ("before", "after", "written"),
    [
        (call(1), b"\n" + call(2), ["c1", "c2"]),  # between two calls
        (b"", b"", []),  # the whole file is one line, no newline at all
        (call(1), b"", ["c1"]),  # the last line, cut by a crash
    ],
    ids=["between-calls", "no-newline-at-all", "last-line-without-newline"],
)
async def test_an_over_long_line_is_moved_aside_cut_in_bounded_memory(
    tmp_path: Path, before: bytes, after: bytes, written: list[str]
) -> None:
    write_huge(tmp_path / SPOOL_FILE, before, HUGE, after)
    writer = Recording()
    recorder = CallRecorder(None, tmp_path, fast=writer)  # the default limit: 1 MiB
    tracemalloc.start()
    try:
        assert await recorder.replay_spool() == len(written)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert writer.written == written
    assert peak < 4 * MAX_LINE  # the limit, a chunk of lines, the skip's blocks; not 64 MiB
    note, kept, end = (tmp_path / REJECTED_FILE).read_bytes().split(b"\n")
    assert (
        note
        == (
            f"# spool line too long: {HUGE} bytes at byte {len(before)} of {REPLAY_FILE}, over "
            f"spool_max_line_bytes ({MAX_LINE}); only its first {KEPT_PREFIX} bytes are kept, "
            "on the next line"
        ).encode()
    )
    assert kept.startswith(b'{"customer_id":"runaway","phone":"777') and len(kept) == KEPT_PREFIX
    assert end == b""
    assert not (tmp_path / REPLAY_FILE).exists() and not (tmp_path / OFFSET_FILE).exists()


async def test_an_over_long_line_is_moved_aside_while_the_database_is_down(
    tmp_path: Path,
) -> None:
    """The line is a chunk of its own: no call of it waits for the database, so it is
    rejected at once, and never read again by the replays of the outage. Before, it shared
    its chunk with the next calls, and every retry (every 5 s) read it whole again."""
    write_huge(tmp_path / SPOOL_FILE, b"", 2 * MAX_LINE, b"\n" + call(1) + call(2))
    writer = Recording(down=True)
    recorder = CallRecorder(None, tmp_path, fast=writer)
    assert await recorder.replay_spool() == 0
    assert (tmp_path / REJECTED_FILE).read_bytes().startswith(b"# spool line too long: ")
    assert int((tmp_path / OFFSET_FILE).read_bytes()) == 2 * MAX_LINE + 1
    writer.down = False
    assert await recorder.replay_spool() == 2
    assert writer.written == ["c1", "c2"]
    assert not (tmp_path / REPLAY_FILE).exists()


async def test_a_line_of_exactly_the_limit_is_a_call_one_byte_more_is_not(
    tmp_path: Path,
) -> None:
    limit = 4096
    fits = call(1, pad=limit - len(call(1)) + 1)  # ``limit`` bytes and its newline
    over = call(2, pad=limit - len(call(2)) + 2)
    assert (len(fits), len(over)) == (limit + 1, limit + 2)
    (tmp_path / SPOOL_FILE).write_bytes(fits + over + call(3))
    writer = Recording()
    recorder = CallRecorder(None, tmp_path, fast=writer, max_line_bytes=limit)
    assert await recorder.replay_spool() == 2
    assert writer.written == ["c1", "c3"]
    note, kept, _ = (tmp_path / REJECTED_FILE).read_bytes().split(b"\n")
    assert note.startswith(f"# spool line too long: {limit + 1} bytes at byte {limit + 1}".encode())
    assert kept == over[:limit]  # the limit is below KEPT_PREFIX: all of it that fits


def test_a_chunk_stops_once_its_lines_hold_the_limit(tmp_path: Path) -> None:
    """Memory per chunk is bounded in bytes too, not only in lines (256 lines of just
    under 1 MiB each would be 256 MiB)."""
    lines = [call(n, pad=900) for n in range(100)]  # ~960 bytes each
    (tmp_path / REPLAY_FILE).write_bytes(b"".join(lines))
    chunk = read_chunk(tmp_path / SPOOL_FILE, 0, 256, max_line=4096)
    assert len(chunk.calls) == 5 and chunk.end == sum(map(len, lines[:5]))  # 4 < 4096 <= 5
    assert not chunk.last


def test_the_limit_is_a_setting(tmp_path: Path) -> None:
    assert load_settings(None, {}).spool_max_line_bytes == MAX_LINE == 1 << 20
    env = {"IVR_ENGINE_SPOOL_MAX_LINE_BYTES": "65536"}
    assert load_settings(None, env).spool_max_line_bytes == 65536
    with pytest.raises(ConfigError, match="spool_max_line_bytes"):
        load_settings(None, {"IVR_ENGINE_SPOOL_MAX_LINE_BYTES": "1000"})  # below a call
