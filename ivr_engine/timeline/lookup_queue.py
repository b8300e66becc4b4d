"""The lookup's connections and its queue: FIFO, at most ``size`` connections, batches.

A lookup is queued with a future for its row. A free connection (at most ``size`` are busy)
takes the lookups waiting at the head of the queue, up to the driver's ``batch_cap``, and
answers them with one statement (``LookupDriver.fetch``); once answered it takes the next
ones, so a burst of lookups costs a few round trips instead of one each. A lookup that
finds a connection free goes out at once, alone unless others arrived in the same
event-loop turn. Each caller awaits its own future, so when a caller gives up (its
decision deadline cancels it) its future is cancelled: a lookup not yet taken is skipped;
a statement already sent finishes (its connection goes back to the pool) and its row is
dropped. Connections are made lazily and thrown away on any error; a statement that
fails on a reused (possibly stale) connection is tried once more on a fresh one, for the
callers still waiting; any driver error becomes ``TimelineUnavailable`` for each of them.

Event-loop turns matter more than CPU here: with a hundred calls in flight one turn of the
engine's loop takes milliseconds. A caller wakes one turn after its connection task has the
rows, and a connection that answered a batch sends the next one in the same turn; before
this queue, a task per lookup shielded from its caller took one more turn to hand the row
over, and a lookup that waited for a connection one more to start.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.timeline.schema_hint import migrate_hint

Row = Sequence[Any]


@dataclass(eq=False, slots=True)
class Pending:
    """One queued lookup; ``answer`` is cancelled when its caller gives up."""

    kind: str
    value: str
    max_events: int
    answer: asyncio.Future[Row]


class LookupDriver(Protocol):
    errors: tuple[type[BaseException], ...]
    batch_cap: int  # lookups answered by one statement, at most

    async def connect(self) -> Any: ...

    async def fetch(self, conn: Any, batch: Sequence[Pending]) -> list[Row]:
        """One row per lookup of ``batch``, in its order."""
        ...

    def discard(self, conn: Any) -> None: ...

    async def close(self, conn: Any) -> None: ...


class LookupQueue:
    def __init__(self, driver: LookupDriver, size: int, where: str) -> None:
        if size < 1:
            raise ValueError("pool_size must be at least 1")
        self._driver = driver
        self._size = size
        self._where = where
        self._waiting: deque[Pending] = deque()
        self.idle: list[Any] = []  # connections not in use, the most recently used last
        self._busy = 0  # connections taken by a server task or the warm-up (<= size)
        self.servers: set[asyncio.Task[None]] = set()
        self.closed = False

    def submit(self, kind: str, value: str, max_events: int) -> asyncio.Future[Row]:
        """Queue one lookup; await the future for its row (cancel it to give up)."""
        if self.closed:
            raise TimelineUnavailable("the timeline lookup is closed")
        answer: asyncio.Future[Row] = asyncio.get_running_loop().create_future()
        self._waiting.append(Pending(kind, value, max_events, answer))
        self._serve_if_free()
        return answer

    async def warm_up(self) -> bool:
        """Open one connection ahead of the first lookup; False when that fails."""
        if self.idle or self.closed:
            return bool(self.idle)
        if self._busy >= self._size:
            return True  # every connection is being opened or used by a lookup
        self._busy += 1
        try:
            self.idle.append(await self._connect())
        except TimelineUnavailable:
            return False
        finally:
            self._busy -= 1
            self._serve_if_free()  # lookups that queued behind the warm-up
        return True

    async def close(self) -> None:
        """Refuse new lookups, let the statements in flight end (bounded), close the rest."""
        self.closed = True
        if self.servers:  # lookups whose callers gave up: let them end (bounded)
            await asyncio.wait(set(self.servers), timeout=2)
        self._fail_waiting()
        idle, self.idle = self.idle, []
        for conn in idle:
            try:
                await self._driver.close(conn)
            except self._driver.errors:
                self._driver.discard(conn)

    # ------------------------------------------------------------------ serving

    def _serve_if_free(self) -> None:
        if self._waiting and self._busy < self._size:
            self._busy += 1
            task = asyncio.get_running_loop().create_task(self._serve())
            self.servers.add(task)

    async def _serve(self) -> None:
        try:
            while batch := self._take():
                await self._answer(batch)
        except BaseException:  # cancelled (the loop is closing): nobody waits forever
            self._fail_waiting("the timeline lookup was interrupted")
            raise
        finally:
            self._busy -= 1
            self.servers.discard(asyncio.current_task())

    def _take(self) -> list[Pending]:
        """The lookups at the head of the queue still wanted, up to the batch cap."""
        if self.closed:
            self._fail_waiting()
            return []
        batch: list[Pending] = []
        while self._waiting and len(batch) < self._driver.batch_cap:
            pending = self._waiting.popleft()
            if not pending.answer.done():  # done: cancelled, its caller gave up
                batch.append(pending)
        return batch

    async def _answer(self, batch: list[Pending]) -> None:
        try:
            rows = await self._fetch_retrying(batch)
        except TimelineUnavailable as exc:
            _fail(batch, exc)
            return
        except BaseException:  # this task cancelled (the loop is closing): nobody hangs
            _fail(batch, TimelineUnavailable("the timeline lookup was interrupted"))
            raise
        if len(rows) != len(batch):  # the driver's promise broken: nobody gets a wrong row
            _fail(batch, TimelineUnavailable(f"{len(rows)} rows for {len(batch)} lookups"))
            return
        for pending, row in zip(batch, rows, strict=True):
            if not pending.answer.done():
                pending.answer.set_result(row)

    async def _fetch_retrying(self, batch: list[Pending]) -> list[Row]:
        if not self.idle:
            return await self._fetch(await self._connect(), batch)
        try:
            return await self._fetch(self.idle.pop(), batch)
        except TimelineUnavailable:
            self._drop_idle()  # all of them are likely stale (database restarted)
        # Retried only for the callers still waiting (in place: _answer pairs rows with it).
        batch[:] = [p for p in batch if not p.answer.done()]
        return await self._fetch(await self._connect(), batch) if batch else []

    async def _connect(self) -> Any:
        try:
            return await self._driver.connect()
        except self._driver.errors as exc:
            why = f"{exc!r}{migrate_hint(exc)}"
            raise TimelineUnavailable(f"cannot connect to {self._where}: {why}") from exc

    async def _fetch(self, conn: Any, batch: Sequence[Pending]) -> list[Row]:
        try:
            rows = await self._driver.fetch(conn, batch)
        except self._driver.errors as exc:
            self._driver.discard(conn)
            why = f"{exc!r}{migrate_hint(exc)}"
            raise TimelineUnavailable(f"lookup failed on {self._where}: {why}") from exc
        except BaseException:  # cancelled mid-statement: state unknown, drop it
            self._driver.discard(conn)
            raise
        if self.closed:
            self._driver.discard(conn)
        else:
            self.idle.append(conn)
        return rows

    def _drop_idle(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            self._driver.discard(conn)

    def _fail_waiting(self, why: str = "the timeline lookup is closed") -> None:
        waiting = list(self._waiting)
        self._waiting.clear()
        _fail(waiting, TimelineUnavailable(why))


def _fail(batch: Sequence[Pending], error: TimelineUnavailable) -> None:
    """Each waiting caller gets its own exception (one raised in many tasks would collect
    all their tracebacks)."""
    for pending in batch:
        if not pending.answer.done():
            own = TimelineUnavailable(*error.args)
            own.__cause__ = error.__cause__
            pending.answer.set_exception(own)
