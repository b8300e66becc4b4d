"""Writes finished calls to the timeline in the background, so routing never waits on SQL.

Calls that end within ``linger_s`` of each other share one write (one transaction instead
of one per call: the engine's CPU per call, bench/results.md): a call is written at most
``linger_s`` after it ended plus the write itself (and any write still running then); a full
batch or closing ends the wait at once.

No call is lost: a write that fails (database down, slow) goes to a spool file of JSON
lines; the spool is replayed when the database answers again and on start-up. Writes are
idempotent (event ids derive from the call's key, chosen when it started and kept in the
spooled record), so a replay after a partial write is safe; a replay first looks its event
ids up, so an older spool line whose id holds another call gets a fresh one (``call_identity``).

How each call is written (known customers, first-time callers) is up to ``CallBatchWriter``
(``call_writer``); the spool's line format is in ``spool_lines``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ivr_engine.data_dirs import make_private_dir
from ivr_engine.flows.call_customers import FastWriter
from ivr_engine.flows.call_record import CallRecord, CallWrite, to_write
from ivr_engine.flows.call_writer import CallBatchWriter
from ivr_engine.flows.spool_files import (
    REJECTED_FILE,
    REPLAY_LOCK_FILE,
    SPOOL_FILE,
    FileLock,
    append_to_spool,
)
from ivr_engine.flows.spool_lines import write_to_json
from ivr_engine.flows.spool_replay import MAX_LINE, begin_replay, finish_chunk, read_chunk
from ivr_engine.ports import TimelineStore

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

__all__ = ["REJECTED_FILE", "SPOOL_FILE", "CallRecorder"]


class CallRecorder:
    """Bounded queue → one writer task → timeline; spool file while the timeline is down.

    First-time callers are stored through ``fast`` when it is a ``CustomerDirectory``
    (``FastCallWriter``), else through ``store``; ``store`` may be ``None`` only with such a
    writer (no SQLAlchemy on the classic AGI path).
    """

    def __init__(
        self,
        store: TimelineStore | None,
        spool_dir: Path,
        *,
        fast: FastWriter | None = None,
        queue_size: int = 10_000,
        write_timeout_s: float = 5.0,
        retry_interval_s: float = 5.0,
        linger_s: float = 0.0,
        max_batch: int = 256,
        max_line_bytes: int = MAX_LINE,
    ) -> None:
        if linger_s < 0 or max_batch < 1 or max_line_bytes < 1:
            raise ValueError("linger_s must be >= 0, max_batch and max_line_bytes >= 1")
        self._writer = CallBatchWriter(store, fast, write_timeout_s)
        self._spool = spool_dir / SPOOL_FILE
        self._queue: asyncio.Queue[CallWrite] = asyncio.Queue(queue_size)
        self._retry_interval_s = retry_interval_s
        self._linger_s = linger_s
        self._max_batch = max_batch
        self._max_line = max_line_bytes  # a longer spool line is rejected, read in blocks
        self._lingering: asyncio.Future[None] | None = None
        self._submitted: deque[float] = deque()  # loop time of each call in the queue, in order
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._spool_lock = asyncio.Lock()
        # Whether the spool may hold calls this recorder appended: after a written batch no
        # file check (a blocking stat on the loop) is needed to know. What other processes
        # sharing the directory spool is taken by the replays at start and when idle.
        self._spool_may_hold = True
        self._overflow: list[CallWrite] = []
        self._in_flight: list[CallWrite] = []
        self._unspooled: list[CallWrite] = []  # failed writes the spool refused
        self._spool_broken = False
        self._file_op: asyncio.Future[Any] | None = None  # the replay's, on a thread
        self._replayed = 0  # by replays that stopped early for queued calls, not yet logged
        self.spooled = 0

    @property
    def written(self) -> int:
        """Calls written to the timeline so far."""
        return self._writer.written

    def submit(self, record: CallRecord) -> None:
        write = to_write(record)
        try:
            self._queue.put_nowait(write)
        except asyncio.QueueFull:
            self._overflow.append(write)  # spooled by the worker; never dropped
            return
        self._submitted.append(asyncio.get_running_loop().time())
        if self._queue.qsize() >= self._max_batch - 1:
            _wake(self._lingering)  # a full batch: no reason to wait

    async def start(self, *, spool_required: bool = True) -> None:
        """Create the spool directory and start the writer task. ``spool_required=False``
        (the classic AGI script, whose caller is waiting): a directory that cannot be made
        (read-only parent, a file in the way) is a warning and the call goes on; a call the
        database cannot take then stays in memory until ``close``, which logs it lost."""
        try:
            await asyncio.to_thread(make_private_dir, self._spool.parent)
        except OSError as exc:
            if spool_required:
                raise
            log.warning(
                "cannot create the spool directory %s (%r): the call goes on without a "
                "spool; fix the directory or spool_dir, or calls are lost while the "
                "database is down",
                self._spool.parent,
                exc,
            )
            self._spool_broken = True  # said once: the replay's error is not logged again
        self._task = asyncio.create_task(self._run(), name="call-recorder")
        self._task.add_done_callback(_log_death)

    async def close(self, grace_s: float = 5.0) -> None:
        """Write what is queued (bounded by ``grace_s``); spool the rest."""
        self._closing = True
        _wake(self._lingering)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # logged: _log_death
                await self._task
        leftover = self._unspooled + self._in_flight + self._overflow + _drain(self._queue)
        if leftover:
            try:
                await self._append_spool(leftover)
            except OSError as exc:
                log.error(
                    "%d call(s) LOST: neither written nor spooled to %s (%r)",
                    len(leftover),
                    self._spool,
                    exc,
                )

    async def _run(self) -> None:
        await self._replay_logged()
        while True:
            try:
                async with asyncio.timeout(self._retry_interval_s):
                    write = await self._queue.get()
            except TimeoutError:
                if self._unspooled:  # idle: try them on the timeline again
                    await self._write_batch(())
                else:
                    await self._replay_logged()
                continue
            ended = self._submitted.popleft() if self._submitted else None
            self._in_flight = [write]  # spooled by ``close`` if cancelled while lingering
            await self._linger(ended)
            batch = [write, *self._take(self._max_batch - 1)]
            self._in_flight = batch
            try:
                await self._write_batch(batch)
            except Exception:  # a bug must not end the task: every later call would be lost
                log.exception("recording %d call(s) failed; spooling them", len(batch))
                await self._spool_or_keep(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
            # not on a cancel (``close``'s grace ran out): ``close`` spools ``_in_flight``
            self._in_flight = []

    def _take(self, limit: int) -> list[CallWrite]:
        taken = _drain(self._queue, limit)
        for _ in taken:
            if self._submitted:
                self._submitted.popleft()
        return taken

    async def _linger(self, ended: float | None) -> None:
        """Wait until ``linger_s`` after the oldest call of the batch ended for more finished
        calls, unless a batch is already full or the recorder is closing."""
        if self._linger_s <= 0 or self._closing or self._queue.qsize() >= self._max_batch - 1:
            return
        loop = asyncio.get_running_loop()
        delay = self._linger_s if ended is None else ended + self._linger_s - loop.time()
        if delay <= 0:
            return
        self._lingering = waiting = loop.create_future()
        timer = loop.call_later(delay, _wake, waiting)
        try:
            await waiting
        finally:
            timer.cancel()
            self._lingering = None

    async def _write_batch(self, batch: Sequence[CallWrite]) -> None:
        pending = [*self._unspooled, *batch] if self._unspooled else batch
        failed, rejected = await self._writer.write(pending)
        self._unspooled = []  # in ``pending``: written, or in ``failed``
        if rejected:
            try:
                await self._reject(rejected)
            except OSError:  # rejected again from the spool once the file can be written
                failed.extend(rejected)
        if self._overflow:
            failed.extend(self._overflow)
            self._overflow.clear()
        if failed:
            await self._spool_or_keep(failed)
        elif self._spool_may_hold:
            await self._replay_logged()

    async def _spool_or_keep(self, writes: list[CallWrite]) -> None:
        """Spool ``writes``; when the spool cannot be written (disk full, read-only), keep
        them in memory: the next batch tries them on the timeline again."""
        try:
            await self._append_spool(writes)
        except OSError as exc:
            self._unspooled.extend(writes)
            self._note_spool_error(f"cannot spool {len(writes)} call(s) to {self._spool}", exc)
        else:
            self._spool_broken = False

    async def _replay_logged(self) -> None:
        """``replay_spool`` for the writer task: a spool it cannot read or lock is logged
        and tried again later, never the end of the task (every later call would be lost)."""
        try:
            await self.replay_spool()
        except Exception as exc:
            self._note_spool_error(f"cannot replay the spool {self._spool}", exc)
        else:
            self._spool_broken = False

    def _note_spool_error(self, what: str, exc: Exception) -> None:
        if not self._spool_broken:  # once per outage, not every retry interval
            trace = None if isinstance(exc, OSError) else exc  # not a disk error: a bug
            log.error("%s (%r): calls are kept in memory and retried", what, exc, exc_info=trace)
        self._spool_broken = True

    async def _append_spool(self, writes: Sequence[CallWrite]) -> None:
        lines = "".join(write_to_json(w) + "\n" for w in writes).encode()
        async with self._spool_lock:
            self._spool_may_hold = True
            await asyncio.to_thread(_append_to_spool_dir, self._spool, lines)
        self.spooled += len(writes)

    async def _reject(self, writes: Sequence[CallWrite]) -> None:
        """Keep calls the database refuses in the rejected file, not retried (an operator
        reads, fixes and replays them by hand)."""
        path = self._spool.with_name(REJECTED_FILE)
        lines = "".join(write_to_json(w) + "\n" for w in writes).encode()
        await asyncio.to_thread(_append_to_spool_dir, path, lines)  # under the spool lock

    async def replay_spool(self) -> int:
        """Write spooled calls, a chunk of at most ``max_batch`` at a time; on the first
        failure keep the rest for later. Stops early, with its progress kept, when calls
        are waiting in the queue: the next written batch replays on. Returns written (0
        also when another process is replaying this spool directory right now)."""
        replaying = FileLock(self._spool.with_name(REPLAY_LOCK_FILE))
        acquiring = asyncio.ensure_future(asyncio.to_thread(_acquire_in_dir, replaying))
        try:
            acquired = await asyncio.shield(acquiring)
        except asyncio.CancelledError:  # the thread may still take it: give it back then
            acquiring.add_done_callback(lambda _: replaying.release())
            raise
        if not acquired:
            return 0
        try:
            return await self._replay()
        finally:  # not while a file operation of the replay still runs (cancelled)
            _release_after(replaying, self._file_op)

    async def _in_thread(self, fn: Callable[P, T], *args: P.args, **kw: P.kwargs) -> T:
        """``fn`` on a worker thread; if the replay is cancelled meanwhile, the replay lock
        is given back only once ``fn`` is done (another process must not see its half)."""
        self._file_op = op = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kw))
        return await asyncio.shield(op)

    async def _replay(self) -> int:
        async with self._spool_lock:
            start = await self._in_thread(begin_replay, self._spool)
            self._spool_may_hold = False  # all taken (appends wait for the lock, then set it)
        written = 0
        while start is not None:
            chunk = await self._in_thread(
                read_chunk, self._spool, start, self._max_batch, self._max_line
            )
            calls = chunk.calls
            failed, refused = await self._writer.write(calls, replayed=True) if calls else ([], [])
            if len(failed) == len(chunk.calls) > 0:  # down or slow: this chunk and the
                self._spool_may_hold = True  # rest stay in the replay file, for later
                self._log_replayed(written, chunk.size - chunk.start)
                return written
            if refused:
                await self._reject(refused)  # else the chunk is replayed again (logged)
            if failed:  # some (a customer gone meanwhile): spooled, the replay goes on
                await self._append_spool(failed)  # else the chunk is replayed again
            await self._in_thread(finish_chunk, self._spool, chunk)
            if chunk.too_long:
                log.error(
                    "a spool line over %d bytes (spool_max_line_bytes) moved to %s, cut: %s",
                    self._max_line,
                    REJECTED_FILE,
                    chunk.unreadable[0].partition(b"\n")[0].decode(),
                )
            elif chunk.unreadable:
                log.error(
                    "%d unreadable spool line(s) moved to %s", len(chunk.unreadable), REJECTED_FILE
                )
            written += len(chunk.calls) - len(refused) - len(failed)
            start = None if chunk.last else chunk.end
            if start is not None and (self._queue.qsize() or self._overflow):
                self._spool_may_hold = True  # queued calls first: resumed after their batch
                self._replayed += written
                return written
        self._log_replayed(written, 0)
        return written

    def _log_replayed(self, written: int, left: int) -> None:
        """The other half of "timeline write failed ...; spooling N call(s)": what a replay
        (and the ones it resumed) wrote, once it ends."""
        total, self._replayed = self._replayed + written, 0
        if total:
            still = "0" if not left else f"{left} bytes"
            log.info("%d spooled call(s) written to the timeline (%s still spooled)", total, still)


def _release_after(lock: FileLock, op: asyncio.Future[Any] | None) -> None:
    if op is None or op.done():
        lock.release()
    else:

        def release(done: asyncio.Future[Any]) -> None:
            if not done.cancelled():
                done.exception()  # retrieved: the replay that awaited it was cancelled
            lock.release()

        op.add_done_callback(release)


def _append_to_spool_dir(spool: Path, data: bytes) -> None:
    """``append_to_spool``, re-creating the spool directory if it was removed meanwhile."""
    make_private_dir(spool.parent)
    append_to_spool(spool, data)


def _acquire_in_dir(lock: FileLock) -> bool:
    make_private_dir(lock.path.parent)
    return lock.acquire(wait=False)


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error(
            "the call recorder stopped (%r): calls are no longer written nor spooled",
            task.exception(),
            exc_info=task.exception(),
        )


def _drain(queue: asyncio.Queue[CallWrite], limit: int | None = None) -> list[CallWrite]:
    items: list[CallWrite] = []
    while not queue.empty() and (limit is None or len(items) < limit):
        items.append(queue.get_nowait())
    return items


def _wake(waiting: asyncio.Future[None] | None) -> None:
    if waiting is not None and not waiting.done():
        waiting.set_result(None)
