"""Short SQLite statements on the event-loop thread, within a hard time budget.

Why: on the virtual machines this engine is measured on, handing a statement to a worker
thread and back costs 130-250 µs of CPU (two thread wake-ups and the GIL changing hands,
bench/results.md), more than the per-call lookup itself (~0.1 ms on warm pages). So the
hot-path lookup runs here first, and the worker thread stays the path for everything that
could wait:

* the budget (default 2 ms) is enforced inside SQLite by a progress handler, so a
  statement that runs long (cold pages, a huge history) is interrupted, not waited for;
* the connection has no busy timeout: a lock held by another process is never waited
  for on the loop, the statement is declined at once;
* any decline, error or slow run pauses the inline path for ``pause_s`` (default 5 s),
  doubled after each decline up to ``max_pause_s`` (5 min) and back to ``pause_s`` after
  ``RESET_AFTER`` statements in a row ran inline within budget: on a database where the
  statements are often slow (a big, cold SQLite file) the inline path is then tried only
  now and then, so its interrupted work costs next to nothing. Meanwhile the caller uses
  its worker-thread path, which has the full timeouts and error reporting.

Writes (the per-call record) go the same way: ``BEGIN IMMEDIATE`` with no busy wait, the
commit itself never interrupted, no WAL checkpoint on the loop. Callers treat
``InlineDeclined`` as "use the thread path", never as a failure.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

DEFAULT_BUDGET_S = 0.002
DEFAULT_PAUSE_S = 5.0
DEFAULT_MAX_PAUSE_S = 300.0
RESET_AFTER = 100  # statements in a row within budget before the pause is short again
T = TypeVar("T")
_PROGRESS_EVERY = 500  # SQLite VM instructions between budget checks (~tens of µs)


class InlineDeclined(Exception):
    """The statement did not run (or was cut off) on the loop: run it on the worker."""


class InlineSqlite:
    """One connection used only from the event-loop thread (read-only unless ``writes``).

    A writing connection commits each ``run`` in one ``BEGIN IMMEDIATE`` transaction and
    never checkpoints the WAL itself (``wal_autocheckpoint=0``: a checkpoint writes and
    syncs the database file); its owner checkpoints on a worker thread (``commits``).
    """

    def __init__(
        self,
        path: Path,
        *,
        writes: bool = False,
        budget_s: float = DEFAULT_BUDGET_S,
        pause_s: float = DEFAULT_PAUSE_S,
        max_pause_s: float = DEFAULT_MAX_PAUSE_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._uri = f"{path.as_uri()}?mode=rw"  # rw even to read: WAL readers need the -shm
        self._writes = writes
        self._budget_s = budget_s
        self._base_pause_s = self._pause_s = pause_s
        self._max_pause_s = max_pause_s
        self._in_budget = 0  # statements in a row within budget since the last decline
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._deadline = 0.0
        self._paused_until = 0.0
        self.declined = 0  # statements handed to the worker path (for tests and metrics)
        self.commits = 0

    def fetch_one(self, sql: str, params: Sequence[Any]) -> Sequence[Any] | None:
        """The statement's first row; ``InlineDeclined`` when it should go to the worker."""
        row: Sequence[Any] | None = self.run(lambda conn: conn.execute(sql, params).fetchone())
        return row

    def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` (in one transaction when writing); ``InlineDeclined`` when it
        should go to the worker instead (nothing of it was committed then)."""
        started = self._clock()
        if started < self._paused_until:
            self.declined += 1
            raise InlineDeclined("inline path paused")
        self._deadline = started + self._budget_s
        try:
            conn = self._connection()
            result = self._transaction(conn, work) if self._writes else work(conn)
        except sqlite3.Error as exc:
            self._decline(f"{exc!r}", drop=not _interrupted(exc))
            raise InlineDeclined(repr(exc)) from exc
        elapsed = self._clock() - started
        if elapsed > self._budget_s:  # one blocking page read can overrun the handler
            self._decline(f"took {elapsed * 1000:.1f} ms", drop=False)
        else:
            self._in_budget += 1
            if self._in_budget >= RESET_AFTER:
                self._pause_s = self._base_pause_s
        return result

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def _transaction(self, conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")  # timeout 0: another writer's lock → declined
        try:
            result = work(conn)
            self._deadline = math.inf  # a commit is never cut off half way
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    self.close()
            raise
        self.commits += 1
        return result

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # timeout=0: a locked database is declined at once, never waited for here.
            conn = sqlite3.connect(self._uri, uri=True, timeout=0, isolation_level=None)
            pragmas = _WRITE_PRAGMAS if self._writes else _READ_PRAGMAS
            for pragma in pragmas:
                conn.execute(f"PRAGMA {pragma}")
            conn.set_progress_handler(self._over_budget, _PROGRESS_EVERY)
            self._conn = conn
        return self._conn

    def _over_budget(self) -> bool:
        return self._clock() > self._deadline

    def _decline(self, why: str, *, drop: bool) -> None:
        self.declined += 1
        self._paused_until = self._clock() + self._pause_s
        log.info("inline SQLite declined (%s); worker thread for %.0f s", why, self._pause_s)
        self._pause_s = min(self._pause_s * 2, self._max_pause_s)  # the next one, if soon
        self._in_budget = 0
        if drop:
            self.close()


_READ_PRAGMAS = ("query_only=ON",)
# synchronous is per connection; NORMAL in WAL mode as everywhere else in the engine.
_WRITE_PRAGMAS = ("synchronous=NORMAL", "foreign_keys=ON", "wal_autocheckpoint=0")


def _interrupted(exc: sqlite3.Error) -> bool:
    return "interrupted" in str(exc)
