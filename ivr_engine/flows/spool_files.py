"""The call spool's files, safe when several processes share the spool directory.

Every classic AGI call is its own process, and engines on one host may share a spool
directory, so the spool is guarded across processes with ``flock`` (blocking calls: run
them on a worker thread):

* ``calls.lock``: held for each append and for taking the spool (moving its lines to the
  replay file). Without it an append landing between another process's read and unlink
  of the spool would be lost.
* ``calls.replaying.lock``: held for a whole replay (take, write, remove the replay file;
  ``spool_replay`` keeps the replay's progress in ``calls.replaying.offset``).
  A process that finds it held does not replay: another one is at it, and two replays
  of one replay file could remove lines the other has not written yet.

The kernel releases both when their holder exits, also on a crash, so a crash never
leaves the spool locked; the replay file it leaves is taken again by the next replay.

Power loss: a process crash loses nothing the kernel was given, but a power cut loses what
is only in the page cache. So every append (spool, replay, rejected) is ``fsync``ed before
it returns (the recorder then forgets the calls), a new file's directory entry too, and a
rename or removal whose order matters is followed by an ``fsync`` of the directory.
Measured in ``bench/spool_fsync.py``: calls are only spooled while the database is down.
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Iterable
from pathlib import Path

from ivr_engine.data_dirs import PRIVATE_FILE_MODE

SPOOL_FILE = "calls.jsonl"
REPLAY_FILE = "calls.replaying.jsonl"  # taken from the spool; survives a crash mid-replay
REJECTED_FILE = "calls.rejected.jsonl"  # spool lines that cannot be parsed: kept, not retried
SPOOL_LOCK_FILE = "calls.lock"
REPLAY_LOCK_FILE = "calls.replaying.lock"


class FileLock:
    """An exclusive ``flock`` on ``path`` (created if missing), across processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, *, wait: bool = True) -> bool:
        """Take the lock; with ``wait=False`` return False at once if another holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases the lock

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (files created, renamed, removed) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_to_spool(spool: Path, data: bytes) -> None:
    with FileLock(spool.with_name(SPOOL_LOCK_FILE)):
        append_bytes(spool, data)


def take_spool(spool: Path) -> None:
    """Move the spool's lines to the end of the replay file (kept until written; read a
    chunk at a time by ``spool_replay``), never holding them all in memory. The caller
    holds the replay lock."""
    replay = spool.with_name(REPLAY_FILE)
    with FileLock(spool.with_name(SPOOL_LOCK_FILE)):
        if not spool.exists():
            return
        if not replay.exists():
            os.replace(spool, replay)
        else:
            with spool.open("rb") as source:  # a partial last line of either stays a line
                _append(replay, iter(functools.partial(source.read, 1 << 20), b""))
            spool.unlink()  # only once the replay file's copy is durable (``_append``)
        fsync_dir(spool.parent)  # else a power cut may bring the spool back: duplicates


def append_bytes(path: Path, data: bytes) -> None:
    """Append whole lines: a file not ending in a newline (a writer killed mid-line) gets
    one first, so its partial line is rejected alone instead of taking ``data``'s first
    line with it; a write that fails (disk full: possibly after a short write) is cut back
    to where it started, so no partial line of ours stays. Durable when it returns
    (``fsync``; a new file's directory entry too, and that directory's in its parent).
    The caller holds the lock."""
    _append(path, [data])


_OPEN_TRIES = 10  # each a file removed between two opens: a replay taking it


def _open_to_append(path: Path) -> tuple[int, bool]:
    """The file descriptor, and whether this call created the file."""
    flags = os.O_RDWR | os.O_APPEND
    for _ in range(_OPEN_TRIES):
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE), True
        except FileExistsError:
            pass
        try:
            return os.open(path, flags), False
        except FileNotFoundError:  # removed in between (a replay took it): create it
            if os.path.islink(path):  # dangling: O_EXCL refuses it, a plain open finds nothing
                break
    # a symbolic link to a file not there yet: created through it, as a plain O_CREAT does
    # (and not tried again and again forever, holding the spool's lock)
    return os.open(path, flags | os.O_CREAT, PRIVATE_FILE_MODE), True


def _append(path: Path, blocks: Iterable[bytes]) -> None:
    fd, created = _open_to_append(path)
    try:
        if created:  # customer data: 0600 whatever the umask; an existing file keeps its mode
            os.fchmod(fd, PRIVATE_FILE_MODE)
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            if start and os.pread(fd, 1, start - 1) != b"\n":
                os.write(fd, b"\n")
            for block in blocks:
                view = memoryview(block)
                while view:  # unbuffered: a short write is seen here, not lost in a buffer
                    view = view[os.write(fd, view) :]
            os.fsync(fd)  # failing (EIO): cut back and raised, the caller keeps the calls
        except BaseException:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
    if not start:  # created (or was empty): its directory entry must survive a power cut,
        fsync_dir(path.parent)  # and the directory's own (the spool directory may be new)
        fsync_dir(path.parent.parent)


def replace_file(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` (written beside it, ``fsync``ed, then renamed over it, and
    the rename made durable): the old content stays whole if the new one cannot be written,
    and after a power cut ``path`` holds the old or the new content, never an empty file."""
    temporary = path.with_name(path.name + ".new")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
