"""The spool shared by several processes (classic AGI: one process per call): appends and
takes exclude each other, one replay at a time, and no line is lost under concurrency."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from ivr_engine.flows.recorder import CallRecorder
from ivr_engine.flows.spool_files import (
    REPLAY_FILE,
    REPLAY_LOCK_FILE,
    SPOOL_FILE,
    SPOOL_LOCK_FILE,
    FileLock,
    append_to_spool,
    take_spool,
)
from ivr_engine.flows.spool_replay import OFFSET_FILE
from ivr_engine.ports import CustomerWrite


def test_taking_the_spool_waits_for_an_append_in_progress(tmp_path: Path) -> None:
    spool = tmp_path / SPOOL_FILE
    spool.write_text("a\n")
    held = FileLock(tmp_path / SPOOL_LOCK_FILE)  # another process appending right now
    assert held.acquire(wait=False)
    taker = threading.Thread(target=take_spool, args=(spool,))
    taker.start()
    taker.join(0.3)
    assert taker.is_alive() and spool.exists()  # waits: no read-then-unlink under an append
    spool.write_text("a\nb\n")  # what the appender wrote before releasing
    held.release()
    taker.join(5)
    assert not spool.exists() and (tmp_path / REPLAY_FILE).read_text() == "a\nb\n"


def test_a_lock_is_free_again_once_released(tmp_path: Path) -> None:
    first, second = FileLock(tmp_path / "x.lock"), FileLock(tmp_path / "x.lock")
    assert first.acquire(wait=False)
    assert not second.acquire(wait=False)
    first.release()
    assert second.acquire(wait=False)
    second.release()


class Recording:
    """A fast writer that records what it was asked to write."""

    def __init__(self) -> None:
        self.written: list[CustomerWrite] = []

    async def write(self, batch: Sequence[CustomerWrite]) -> set[str]:
        self.written.extend(batch)
        return set()

    async def phone_owners(self, phones: Sequence[str]) -> dict[str, list[str]]:
        return {}

    async def create_customers(
        self, phones: Sequence[str | None], keys: Sequence[str | None] = ()
    ) -> list[str]:
        return []


async def test_no_replay_while_another_process_replays(tmp_path: Path) -> None:
    line = '{"customer_id":"c1","phone":"+15550001","events":[],"fields":[]}\n'
    (tmp_path / SPOOL_FILE).write_text(line)
    other = FileLock(tmp_path / REPLAY_LOCK_FILE)
    assert other.acquire(wait=False)
    writer = Recording()
    recorder = CallRecorder(None, tmp_path, fast=writer)
    assert await recorder.replay_spool() == 0
    assert (tmp_path / SPOOL_FILE).read_text() == line and writer.written == []
    other.release()
    assert await recorder.replay_spool() == 1
    assert [w.customer_id for w in writer.written] == ["c1"]
    assert not (tmp_path / SPOOL_FILE).exists() and not (tmp_path / REPLAY_FILE).exists()


APPENDER = """
import sys
from collections.abc import Sequence
from pathlib import Path
from ivr_engine.flows.spool_files import append_to_spool
spool, tag = Path(sys.argv[1]), sys.argv[2]
for i in range(400):
    append_to_spool(spool, f"{tag}-{i}\\n".encode())
"""


def test_concurrent_appenders_and_a_taker_lose_no_line(tmp_path: Path) -> None:
    spool = tmp_path / SPOOL_FILE
    appenders = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(spool), tag]) for tag in "pq"
    ]
    seen: list[str] = []

    def take() -> None:
        take_spool(spool)
        replay = tmp_path / REPLAY_FILE
        if replay.exists():
            seen.extend(replay.read_text().splitlines())
            replay.unlink()  # as a replay does once written

    while any(p.poll() is None for p in appenders):
        take()
    assert all(p.wait() == 0 for p in appenders)
    take()
    assert sorted(seen) == sorted(f"{tag}-{i}" for tag in "pq" for i in range(400))


async def test_a_replay_cancelled_while_taking_its_lock_gives_the_lock_back(
    tmp_path: Path,
) -> None:
    """The recorder is closed (its task cancelled) while the replay lock is being taken on a
    worker thread: the lock must not stay held by this process (every later replay, here or
    in another process, would skip)."""
    import asyncio

    recorder = CallRecorder(None, tmp_path, fast=Recording())
    replay = asyncio.ensure_future(recorder.replay_spool())
    await asyncio.sleep(0)  # inside replay_spool, waiting for the worker thread
    replay.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await replay
    await asyncio.sleep(0.2)  # the worker thread finishes taking the lock, then gives it back
    other = FileLock(tmp_path / REPLAY_LOCK_FILE)
    assert other.acquire(wait=False)
    other.release()


def test_an_append_after_a_partial_line_starts_a_line_of_its_own(tmp_path: Path) -> None:
    """Another process was killed half-way through an append: its partial line must not
    swallow the next call (both would be one unreadable line, rejected)."""
    spool = tmp_path / SPOOL_FILE
    spool.write_bytes(b'{"whole":1}\n{"half a li')
    append_to_spool(spool, b'{"next":2}\n')
    assert spool.read_bytes() == b'{"whole":1}\n{"half a li\n{"next":2}\n'


def test_taking_the_spool_onto_a_replay_file_with_a_partial_line_keeps_lines_apart(
    tmp_path: Path,
) -> None:
    spool = tmp_path / SPOOL_FILE
    (tmp_path / REPLAY_FILE).write_bytes(b'{"a":1}\n{"cut')
    spool.write_bytes(b'{"b":2}\n')
    take_spool(spool)
    assert (tmp_path / REPLAY_FILE).read_bytes() == b'{"a":1}\n{"cut\n{"b":2}\n'


SHORT_WRITE = """
import resource, signal, sys
from pathlib import Path
from ivr_engine.flows.spool_files import append_to_spool
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal's kill
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
try:
    append_to_spool(Path(sys.argv[1]), b"x" * 999 + b"\\n")
except OSError as exc:
    print(type(exc).__name__)
"""


def test_an_append_the_disk_cuts_short_is_taken_back(tmp_path: Path) -> None:
    """A full disk (here: a file size limit, so the kernel makes a real short write, then
    EFBIG): the part of the line that got in is cut off again. Else, once space is back,
    the call (kept in memory) is spooled again glued onto its own first bytes, and lost
    to the rejected file."""
    spool = tmp_path / SPOOL_FILE
    spool.write_bytes(b'{"before":1}\n')
    done = subprocess.run(
        [sys.executable, "-c", SHORT_WRITE, str(spool), "300"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "OSError"
    assert spool.read_bytes() == b'{"before":1}\n'


async def test_an_offset_left_without_its_replay_file_skips_nothing(tmp_path: Path) -> None:
    """An offset file whose replay file is gone (removed by hand) must not be applied to
    the next replay file: its first lines would never be written."""
    lines = [
        f'{{"customer_id":"c{n}","phone":"+1555000{n}","events":[],"fields":[]}}\n' for n in (1, 2)
    ]
    (tmp_path / OFFSET_FILE).write_text(f"{len(lines[0])}\n")
    (tmp_path / SPOOL_FILE).write_text("".join(lines))
    writer = Recording()
    assert await CallRecorder(None, tmp_path, fast=writer).replay_spool() == 2
    assert [w.customer_id for w in writer.written] == ["c1", "c2"]
    assert files(tmp_path) == sorted([REPLAY_LOCK_FILE, SPOOL_LOCK_FILE])


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_an_append_through_a_dangling_symlink_creates_its_target_once(tmp_path: Path) -> None:
    # O_CREAT | O_EXCL refuses a dangling link (EEXIST) and a plain open finds nothing
    # (ENOENT): retried without end, the append spun forever holding the spool's lock
    target = tmp_path / "elsewhere.jsonl"
    (tmp_path / SPOOL_FILE).symlink_to(target)
    code = (
        "import sys; from pathlib import Path; "
        "from ivr_engine.flows.spool_files import append_to_spool; "
        "append_to_spool(Path(sys.argv[1]), b'a\\n')"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / SPOOL_FILE)], check=True, timeout=10)
    assert target.read_bytes() == b"a\n"
    assert target.stat().st_mode & 0o777 == 0o600
