"""The per-call hot path: identity → customer → newest events + known fields, one round trip.

Raw drivers under SQLAlchemy (asyncpg / aiosqlite): one prepared statement returns one
row with the events and fields aggregated as JSON. No explicit transaction (no BEGIN /
ROLLBACK round trips), no pool reset query. A FIFO gate (``asyncio.Semaphore``) sized to
the connection count keeps waiting callers in arrival order. Connections are made lazily,
thrown away on any error, and re-made on the next lookup; a failure on a reused (possibly
stale) connection is retried once on a fresh one, so a database restart costs no call.
Any driver error becomes ``TimelineUnavailable`` (the caller falls back to the static menu).
On SQLite the lookup first runs on the event-loop thread within a 2 ms budget
(``inline_sqlite``): a thread hop costs more CPU than the query; anything slow, locked or
failing goes the aiosqlite way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.domain.models import CallerHistory, HistoryEvent, KnownField
from ivr_engine.ports import LookupResult
from ivr_engine.timeline.inline_sqlite import InlineDeclined, InlineSqlite
from ivr_engine.timeline.urls import parse_database_url, redact

APPLICATION_NAME = "ivr-engine-lookup"

PG_LOOKUP_SQL = """\
WITH ids AS MATERIALIZED (
    SELECT DISTINCT customer_id FROM identities WHERE kind = $1 AND value = $2 LIMIT 2
), hit AS (
    SELECT count(*) AS n, min(customer_id) AS customer_id FROM ids
)
SELECT hit.n, c.id, c.display_name,
    (SELECT json_agg(json_build_array(e.occurred_at, e.channel, e.event_type, e.intent,
                                      e.case_id) ORDER BY e.occurred_at DESC, e.seq DESC)
       FROM (SELECT t.seq, t.occurred_at, t.channel, t.event_type, t.intent, t.case_id
               FROM timeline_events t WHERE t.customer_id = c.id
              ORDER BY t.occurred_at DESC, t.seq DESC LIMIT $3) e) AS events,
    (SELECT json_agg(json_build_array(f.name, f.value, f.source_channel, f.updated_at,
                                      f.verified))
       FROM known_fields f WHERE f.customer_id = c.id) AS fields
FROM hit LEFT JOIN customers c ON hit.n = 1 AND c.id = hit.customer_id"""

# json_group_array keeps the subquery's order in practice, but SQLite does not promise
# it before 3.44: seq is returned too and the rows are sorted again in Python.
SQLITE_LOOKUP_SQL = """\
WITH ids AS (
    SELECT DISTINCT customer_id FROM identities WHERE kind = ?1 AND value = ?2 LIMIT 2
), hit AS (
    SELECT count(*) AS n, min(customer_id) AS customer_id FROM ids
)
SELECT hit.n, c.id, c.display_name,
    (SELECT json_group_array(json_array(e.occurred_at, e.channel, e.event_type, e.intent,
                                        e.case_id, e.seq))
       FROM (SELECT t.seq, t.occurred_at, t.channel, t.event_type, t.intent, t.case_id
               FROM timeline_events t WHERE t.customer_id = c.id
              ORDER BY t.occurred_at DESC, t.seq DESC LIMIT ?3) e) AS events,
    (SELECT json_group_array(json_array(f.name, f.value, f.source_channel, f.updated_at,
                                        f.verified))
       FROM known_fields f WHERE f.customer_id = c.id) AS fields
FROM hit LEFT JOIN customers c ON hit.n = 1 AND c.id = hit.customer_id"""

# For this connection's one statement only. Bitmap scans off: the planner estimates an
# average customer (~10 events) and would bitmap-scan + sort *all* of a busy customer's
# events (700 events: 770 buffers, 4.8 ms); the ordered index scan stops after max_events
# (54 buffers, 0.9 ms). jit off: it only adds latency to a sub-millisecond query.
PG_SESSION_SETTINGS = {
    "application_name": APPLICATION_NAME,
    "TimeZone": "UTC",  # json timestamps as ...+00:00
    "jit": "off",
    "enable_bitmapscan": "off",
}

_SQLITE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, OSError, ValueError)
_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError)

Row = Sequence[Any]


class _Postgres:
    def __init__(self, dsn: str, connect_timeout_s: float) -> None:
        # Imported here, not at the top: a process per call on SQLite (the classic AGI
        # script) would pay ~70 ms of CPU for a driver it never uses.
        import asyncpg

        self.errors: tuple[type[BaseException], ...] = (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
            TimeoutError,
        )
        self._dsn = dsn
        self._timeout = connect_timeout_s

    async def connect(self) -> Any:
        import asyncpg  # already loaded by __init__: a dictionary look-up

        return await asyncpg.connect(
            self._dsn,
            timeout=self._timeout,
            max_cached_statement_lifetime=0,
            server_settings=PG_SESSION_SETTINGS,
        )

    async def fetch(self, conn: Any, kind: str, value: str, max_events: int) -> Row:
        row: Row = await conn.fetchrow(PG_LOOKUP_SQL, kind, value, max_events)
        return row

    def discard(self, conn: Any) -> None:
        conn.terminate()  # no round trip; the server notices the closed socket

    async def close(self, conn: Any) -> None:
        await conn.close(timeout=2)


class _Sqlite:
    errors = _SQLITE_ERRORS

    def __init__(self, path: Path, busy_timeout_s: float) -> None:
        # mode=rw: a missing file is an error, not a new empty database.
        self._uri = f"{path.as_uri()}?mode=rw"
        self._timeout = busy_timeout_s
        self._closing: set[asyncio.Task[None]] = set()

    async def connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(
            self._uri, uri=True, timeout=self._timeout, isolation_level=None
        )
        try:
            await conn.executescript(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA query_only=ON;"
            )
        except BaseException:
            self.discard(conn)
            raise
        return conn

    async def fetch(self, conn: aiosqlite.Connection, kind: str, value: str, n: int) -> Row:
        rows = await conn.execute_fetchall(SQLITE_LOOKUP_SQL, (kind, value, n))
        return next(iter(rows))

    def discard(self, conn: aiosqlite.Connection) -> None:
        task = asyncio.get_running_loop().create_task(self.close(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self, conn: aiosqlite.Connection) -> None:
        try:
            await conn.close()
        except (sqlite3.Error, ValueError):
            conn.stop()


class FastCallerLookup:
    """``CallerLookup`` on raw asyncpg / aiosqlite; at most ``pool_size`` connections."""

    def __init__(
        self,
        database_url: str,
        *,
        pool_size: int = 4,
        connect_timeout_s: float = 5.0,
        inline: bool = True,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        url = parse_database_url(database_url)
        self._where = redact(database_url)
        self._driver: _Postgres | _Sqlite
        self._inline: InlineSqlite | None = None
        if url.postgres_dsn is not None:
            self._driver = _Postgres(url.postgres_dsn, connect_timeout_s)
        else:
            assert url.sqlite_path is not None
            self._driver = _Sqlite(url.sqlite_path, min(connect_timeout_s, 1.0))
            if inline:
                self._inline = InlineSqlite(url.sqlite_path)
        self._decode = _decode_postgres if url.dialect == "postgresql" else _decode_sqlite
        self._gate = asyncio.Semaphore(pool_size)  # FIFO: first caller waiting, first served
        self._idle: list[Any] = []
        self._closed = False
        self._running: set[asyncio.Task[Row]] = set()

    async def lookup(self, kind: str, value: str, *, max_events: int) -> LookupResult:
        """One lookup. A caller that gives up (its decision deadline cancels it) does not
        cut the query off: the query finishes in the background and its connection goes
        back to the pool (terminating a connection mid-query costs a reconnect and leaves
        the driver's futures unretrieved). A query that has not started when its caller
        gave up is skipped."""
        if max_events < 0:
            raise ValueError("max_events must not be negative")
        if self._inline is not None and not self._closed:
            try:
                row = self._inline.fetch_one(SQLITE_LOOKUP_SQL, (kind, value, max_events))
            except InlineDeclined:
                pass  # the worker-thread path below, with its timeouts and errors
            else:
                return self._decoded(row)
        wanted = asyncio.Event()
        wanted.set()
        task = asyncio.get_running_loop().create_task(self._lookup(kind, value, max_events, wanted))
        task.add_done_callback(_retrieve)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        try:
            row = await asyncio.shield(task)
        except asyncio.CancelledError:
            wanted.clear()
            raise
        return self._decoded(row)

    def _decoded(self, row: Row | None) -> LookupResult:
        try:
            if row is None:
                raise ValueError("the lookup returned no row")
            return self._decode(row)
        except _DECODE_ERRORS as exc:
            raise TimelineUnavailable(f"undecodable lookup result: {exc!r}") from exc

    async def _lookup(self, kind: str, value: str, max_events: int, wanted: asyncio.Event) -> Row:
        async with self._gate:
            if not wanted.is_set():
                raise TimelineUnavailable("the caller gave up before the lookup started")
            if self._closed:
                raise TimelineUnavailable("the timeline lookup is closed")
            if self._idle:
                try:
                    row = await self._fetch(self._idle.pop(), kind, value, max_events)
                except TimelineUnavailable:
                    self._drop_idle()  # all of them are likely stale (database restarted)
                    row = await self._fetch(await self._connect(), kind, value, max_events)
            else:
                row = await self._fetch(await self._connect(), kind, value, max_events)
        return row

    async def warm_up(self) -> bool:
        """Open one connection ahead of the first call (connecting can take longer than the
        decision deadline on a cold start). False, not an error, when the database is down:
        calls then get the static menu until it answers."""
        if self._inline is not None:
            with contextlib.suppress(InlineDeclined):  # the worker path is opened below
                self._inline.fetch_one("SELECT 1", ())
        async with self._gate:
            if self._idle or self._closed:
                return bool(self._idle)
            try:
                self._idle.append(await self._connect())
            except TimelineUnavailable:
                return False
        return True

    async def close(self) -> None:
        self._closed = True
        if self._inline is not None:
            self._inline.close()
        if self._running:  # lookups whose callers gave up: let them end (bounded)
            await asyncio.wait(set(self._running), timeout=2)
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await self._driver.close(conn)
            except self._driver.errors:
                self._driver.discard(conn)
        if isinstance(self._driver, _Sqlite) and self._driver._closing:
            await asyncio.gather(*self._driver._closing, return_exceptions=True)

    async def _connect(self) -> Any:
        try:
            return await self._driver.connect()
        except self._driver.errors as exc:
            raise TimelineUnavailable(f"cannot connect to {self._where}: {exc!r}") from exc

    async def _fetch(self, conn: Any, kind: str, value: str, max_events: int) -> Row:
        try:
            row = await self._driver.fetch(conn, kind, value, max_events)
        except self._driver.errors as exc:
            self._driver.discard(conn)
            raise TimelineUnavailable(f"lookup failed on {self._where}: {exc!r}") from exc
        except BaseException:  # cancelled (deadline) mid-query: state unknown, drop it
            self._driver.discard(conn)
            raise
        if self._closed:
            self._driver.discard(conn)
        else:
            self._idle.append(conn)
        return row

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            self._driver.discard(conn)


def _retrieve(task: asyncio.Task[Row]) -> None:
    """Mark a background lookup's outcome as seen (its caller may be gone)."""
    if not task.cancelled():
        task.exception()


def _decode_postgres(row: Row) -> LookupResult:
    n, customer_id, display_name, events_json, fields_json = row
    if n != 1:
        return LookupResult(history=None, ambiguous=n > 1)
    events = tuple(
        HistoryEvent(_aware(at), channel, event_type, intent, case_id)
        for at, channel, event_type, intent, case_id in json.loads(events_json or "[]")
    )
    return LookupResult(_history(customer_id, display_name, events, fields_json))


def _decode_sqlite(row: Row) -> LookupResult:
    n, customer_id, display_name, events_json, fields_json = row
    if n != 1:
        return LookupResult(history=None, ambiguous=n > 1)
    raw = json.loads(events_json or "[]")
    raw.sort(key=lambda e: (e[0], e[5]), reverse=True)  # occurred_at text sorts in time
    events = tuple(
        HistoryEvent(_aware(at), channel, event_type, intent, case_id)
        for at, channel, event_type, intent, case_id, _seq in raw
    )
    return LookupResult(_history(customer_id, display_name, events, fields_json))


def _history(
    customer_id: str, display_name: str | None, events: tuple[HistoryEvent, ...], fields: Any
) -> CallerHistory:
    known = {
        name: KnownField(name, value, channel, _aware(at), bool(verified))
        for name, value, channel, at, verified in json.loads(fields or "[]")
    }
    return CallerHistory(customer_id, display_name, events, known)


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
