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
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from crm_bridge.calls.model import NormalisedEvent
from crm_bridge.calls.state import CallState, StateChanges
from ivr_engine.domain.errors import IvrEngineError

__all__ = ["OutboxBusy", "OutboxError", "OutboxRow", "OutboxSync", "SqliteOutbox"]

T = TypeVar("T")
OutboxSync = Literal["full", "normal"]
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


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    event_id: str
    partition_key: str  # the call id
    body: str  # json of NormalisedEvent.to_bus(), as the bus carries it

    @property
    def event(self) -> dict[str, object]:
        doc: dict[str, object] = json.loads(self.body)
        return doc


class SqliteOutbox:
    def __init__(
        self, db: sqlite3.Connection, path: Path, lock_fd: int, thread: ThreadPoolExecutor
    ) -> None:
        self._db, self.path, self._lock_fd, self._thread = db, path, lock_fd, thread
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str, *, sync: OutboxSync = "full") -> SqliteOutbox:
        path = Path(path)
        thread = ThreadPoolExecutor(1, thread_name_prefix="call-outbox")
        try:
            lock_fd, db = await asyncio.get_running_loop().run_in_executor(
                thread, _connect, path, sync
            )
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(db, path, lock_fd, thread)

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise OutboxError(f"{self.path}: outbox is closed")

        def transaction() -> T:
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
        """Events and the state changes that produced them, in one durable transaction."""
        rows = [(e.event_id, e.call_id, e.to_bus_json()) for e in events]
        saved = [(c.call_id, c.to_json()) for c in changes.saved]
        removed = [(call_id,) for call_id in changes.removed]

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO outbox (event_id, partition_key, body) VALUES (?, ?, ?)", rows
            )
            db.executemany(
                "INSERT OR REPLACE INTO live_calls (call_id, state) VALUES (?, ?)", saved
            )
            db.executemany("DELETE FROM live_calls WHERE call_id = ?", removed)

        if rows or saved or removed:
            await self._run(write)

    async def read_after(self, after_id: int, limit: int) -> list[OutboxRow]:
        """The oldest ``limit`` rows with ``id > after_id``, in append order."""
        sql = (
            "SELECT id, event_id, partition_key, body FROM outbox WHERE id > ? ORDER BY id LIMIT ?"
        )
        found = await self._run(lambda db: db.execute(sql, (after_id, limit)).fetchall())
        return [OutboxRow(i, e, k or _partition_key(body), body) for i, e, k, body in found]

    async def delete_through(self, last_id: int) -> int:
        """Forget every row up to ``last_id`` (they are on the bus); returns rows deleted."""
        sql = "DELETE FROM outbox WHERE id <= ?"
        return await self._run(lambda db: db.execute(sql, (last_id,)).rowcount)

    async def pending(self) -> int:
        return await self._run(lambda db: db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    async def live_calls(self) -> list[CallState]:
        rows = await self._run(lambda db: db.execute("SELECT state FROM live_calls").fetchall())
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
        path.parent.mkdir(parents=True, exist_ok=True)
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
