"""The durable outbox: one SQLite file between the AMI reader and the bus.

Tables: ``outbox`` (normalised events not yet on the bus, in append order, each as the
JSON text the bus carries and its partition key, so the publisher sends it without
decoding it; ``id`` is ``AUTOINCREMENT`` so ids are never reused after deletes) and
``live_calls`` (the normaliser's state of each live call, as JSON). ``append`` writes a
batch of events AND the state changes that produced them in ONE transaction, so after a
crash the restored state always matches the events already committed: nothing is emitted
twice under a new key, and a call's ``call.ended`` still has its start time.

Durability (``sync``)
    WAL journal. ``full`` (default): SQLite fsyncs the WAL at every commit, so an appended
    batch survives a power cut or an OS crash. ``normal``: survives the bridge process being
    killed (SIGKILL, OOM), but the last commits before a power cut or OS crash can be lost.
    The reader appends everything the AMI connection delivered since its last append as one
    transaction (group commit), so the fsync cost is paid per batch, not per event.

All calls run in order on one private thread: the event loop never waits on the disk and
the reader's appends and the publisher's reads and deletes never interleave. One process
per file: ``open`` takes an exclusive ``flock`` on ``<file>.lock`` (released by the kernel
when the process dies, even by SIGKILL) and refuses a second opener.

Hand-over in memory: the rows this process appended, as committed, are also kept in memory
(``_Tail``, at most ``tail_rows``), so ``read_after`` answers the publisher from there
without a read on the thread; rows older than the tail (a previous run's, or while the
bus is down and the tail overflowed) are read from the file. The file stays the record:
a crash loses only the copy. Published rows are ``forget_through``: deleted in the next
append's transaction (no transaction, thread hop and fsync of their own while the reader
appends), or by ``flush_forgotten`` when the reader is idle; until then they are still
rows of the outbox (``read_after``, ``pending``) and a crash publishes them again, which
the consumers skip (at least once, as before).
"""

from __future__ import annotations

import asyncio
import bisect
import fcntl
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, TypeVar

from crm_bridge.calls.model import NormalisedEvent
from crm_bridge.calls.state import CallState, StateChanges
from ivr_engine.data_dirs import create_private_file, make_private_dir
from ivr_engine.domain.errors import IvrEngineError

__all__ = ["OutboxBusy", "OutboxError", "OutboxRow", "OutboxSync", "SqliteOutbox"]

T = TypeVar("T")
OutboxSync = Literal["full", "normal"]
TAIL_ROWS = 100_000  # appended rows kept in memory for the publisher (then read from the file)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id      TEXT NOT NULL,
    body          TEXT NOT NULL,
    partition_key TEXT
);
CREATE TABLE IF NOT EXISTS live_calls (
    call_id TEXT PRIMARY KEY,
    state   TEXT NOT NULL
);
"""


class OutboxError(IvrEngineError):
    """The outbox file cannot be opened, read or written (disk full, permissions ...)."""


class OutboxBusy(OutboxError):
    """Another process has this outbox open."""


class OutboxRow(NamedTuple):  # a tuple: made once per event, ~3x cheaper than a dataclass
    id: int
    event_id: str
    partition_key: str  # the call id
    body: str  # json of NormalisedEvent.to_bus(), as the bus carries it

    @property
    def event(self) -> dict[str, object]:
        doc: dict[str, object] = json.loads(self.body)
        return doc


@dataclass(slots=True)
class _Tail:
    """The rows appended by this process and not deleted yet, in id order: every row of the
    file with ``id > complete_after`` is here (``None``: nothing known, read the file)."""

    limit: int
    rows: list[OutboxRow]
    ids: list[int]
    complete_after: int | None = None

    def extend(self, rows: list[OutboxRow]) -> None:
        if self.complete_after is None or len(self.rows) + len(rows) > self.limit:
            self.rows, self.ids = [], []  # start again from these (older ones: the file)
            self.complete_after = rows[0].id - 1
        self.rows += rows
        self.ids += [row.id for row in rows]

    def after(self, after_id: int, limit: int) -> list[OutboxRow] | None:
        """The answer of ``read_after``, or ``None`` if the file must give it."""
        if self.complete_after is None or after_id < self.complete_after:
            return None
        start = bisect.bisect_right(self.ids, after_id)
        return self.rows[start : start + limit]

    def unknown(self) -> None:
        """An append ended without telling whether it committed: the file answers again."""
        self.rows, self.ids, self.complete_after = [], [], None

    def drop_through(self, last_id: int) -> None:
        end = bisect.bisect_right(self.ids, last_id)
        del self.rows[:end], self.ids[:end]


class SqliteOutbox:
    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        lock_fd: int,
        thread: ThreadPoolExecutor,
        tail_rows: int = TAIL_ROWS,
    ) -> None:
        self._db, self.path, self._lock_fd, self._thread = db, path, lock_fd, thread
        self._closed = False
        self._tail = _Tail(tail_rows, [], [])
        self._forget = 0  # rows through this id may be deleted ...
        self._forgotten = 0  # ... and through this one they are

    @classmethod
    async def open(
        cls, path: Path | str, *, sync: OutboxSync = "full", tail_rows: int = TAIL_ROWS
    ) -> SqliteOutbox:
        path = Path(path)
        thread = ThreadPoolExecutor(1, thread_name_prefix="call-outbox")
        try:
            lock_fd, db = await asyncio.get_running_loop().run_in_executor(
                thread, _connect, path, sync
            )
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(db, path, lock_fd, thread, tail_rows)

    async def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """``work`` on the thread: in a write transaction (``BEGIN IMMEDIATE``), or for a
        single read (``write=False``) without one (no write lock taken, nothing to commit)."""
        if self._closed:
            raise OutboxError(f"{self.path}: outbox is closed")

        def transaction() -> T:
            if not write:
                return work(self._db)  # one statement: its own read transaction
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, transaction)
        except sqlite3.Error as exc:
            raise OutboxError(f"{self.path}: call outbox: {exc}") from exc

    async def append(self, events: Sequence[NormalisedEvent], changes: StateChanges) -> None:
        """Events and the state changes that produced them, in one durable transaction
        (which also deletes the rows forgotten since the last one)."""
        rows = [(e.event_id, e.call_id, e.to_bus_json()) for e in events]
        saved = [(c.call_id, c.to_json()) for c in changes.saved]
        removed = [(call_id,) for call_id in changes.removed]
        forget = self._forget if self._forget > self._forgotten else 0

        def write(db: sqlite3.Connection) -> int:
            if forget:
                db.execute(_DELETE_THROUGH, (forget,))
            db.executemany(
                "INSERT INTO outbox (event_id, partition_key, body) VALUES (?, ?, ?)", rows
            )
            # AUTOINCREMENT, one writer: this batch's ids are the ``len(rows)`` up to the last
            last: int = db.execute("SELECT last_insert_rowid()").fetchone()[0] if rows else 0
            db.executemany(
                "INSERT OR REPLACE INTO live_calls (call_id, state) VALUES (?, ?)", saved
            )
            db.executemany("DELETE FROM live_calls WHERE call_id = ?", removed)
            return last

        if not (rows or saved or removed or forget):
            return
        try:
            last = await self._run(write)
        except OutboxError:
            raise  # rolled back: the memory still matches the file
        except BaseException:  # cancelled (the thread may still commit it), or a bug
            self._tail.unknown()
            raise
        if forget:
            self._deleted(forget)
        if rows:
            first = last - len(rows) + 1
            self._tail.extend(
                [OutboxRow(first + n, e, k, body) for n, (e, k, body) in enumerate(rows)]
            )

    async def read_after(self, after_id: int, limit: int) -> list[OutboxRow]:
        """The oldest ``limit`` rows with ``id > after_id``, in append order (from memory
        when this process appended all of them, see the module doc)."""
        kept = self._tail.after(after_id, limit)
        if kept is not None:
            return kept
        sql = (
            "SELECT id, event_id, partition_key, body FROM outbox WHERE id > ? ORDER BY id LIMIT ?"
        )
        found = await self._run(
            lambda db: db.execute(sql, (after_id, limit)).fetchall(), write=False
        )
        return [OutboxRow(i, e, k or _partition_key(body), body) for i, e, k, body in found]

    def forget_through(self, last_id: int) -> None:
        """Rows up to ``last_id`` may go (they are on the bus): deleted by the next
        ``append`` or ``flush_forgotten``, whichever comes first."""
        self._forget = max(self._forget, last_id)

    async def flush_forgotten(self) -> int:
        """Delete the rows forgotten and not yet deleted now; returns rows deleted."""
        if self._forget <= self._forgotten:
            return 0
        return await self.delete_through(self._forget)

    async def delete_through(self, last_id: int) -> int:
        """Forget every row up to ``last_id`` (they are on the bus); returns rows deleted."""
        deleted = await self._run(lambda db: db.execute(_DELETE_THROUGH, (last_id,)).rowcount)
        self._deleted(last_id)
        return deleted

    def _deleted(self, last_id: int) -> None:
        self._forgotten = max(self._forgotten, last_id)
        self._forget = max(self._forget, last_id)
        self._tail.drop_through(last_id)

    async def pending(self) -> int:
        """Rows in the file (forgotten ones too, until they are deleted)."""
        return await self._run(
            lambda db: db.execute("SELECT count(*) FROM outbox").fetchone()[0], write=False
        )

    async def live_calls(self) -> list[CallState]:
        rows = await self._run(
            lambda db: db.execute("SELECT state FROM live_calls").fetchall(), write=False
        )
        return [CallState.from_json(row[0]) for row in rows]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            self._db.close()
            os.close(self._lock_fd)  # releases the flock

        await asyncio.get_running_loop().run_in_executor(self._thread, close)
        self._thread.shutdown(wait=False)


_DELETE_THROUGH = "DELETE FROM outbox WHERE id <= ?"


def _partition_key(body: str) -> str:
    """A row written before the partition_key column existed: read it from the body."""
    return str(json.loads(body)["partition_key"])


def _upgrade(db: sqlite3.Connection) -> None:
    """Outbox files from before the ``partition_key`` column get it (NULL in old rows)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    if "partition_key" not in columns:
        db.execute("ALTER TABLE outbox ADD COLUMN partition_key TEXT")


def _connect(path: Path, sync: OutboxSync) -> tuple[int, sqlite3.Connection]:
    if sync not in ("full", "normal"):
        raise OutboxError(f"outbox sync must be 'full' or 'normal', got {sync!r}")
    try:
        make_private_dir(path.parent)
        create_private_file(path)  # call events are customer data: 0600
        lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise OutboxError(f"{path}: cannot create the call outbox: {exc}") from exc
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock_fd)
        raise OutboxBusy(f"{path}: the call outbox is open in another process") from None
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {sync.upper()}")
        db.executescript(_SCHEMA)
        _upgrade(db)
    except sqlite3.Error as exc:
        os.close(lock_fd)
        raise OutboxError(f"{path}: cannot open the call outbox: {exc}") from exc
    return lock_fd, db
