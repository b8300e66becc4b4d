"""The per-call hot path: identity → customer → newest events + known fields, one round trip.

Raw drivers under SQLAlchemy (asyncpg / aiosqlite): one prepared statement returns one
row with the events and fields aggregated as JSON. No explicit transaction (no BEGIN /
ROLLBACK round trips), no pool reset query. Lookups wait in one FIFO queue for at most
``pool_size`` connections (``lookup_queue``); on PostgreSQL a free connection answers all
the lookups waiting (up to ``batch_cap``) with one statement over arrays of phones, the
same per-phone work, one row each: a burst of calls costs a few round trips, not one per
call, and a lookup that finds a connection free goes out at once. Connections are made
lazily, thrown away on any error, and re-made on the next lookup; a failure on a reused
(possibly stale) connection is retried once on a fresh one, so a database restart costs
no call. Any driver error becomes ``TimelineUnavailable`` (the caller falls back to the
static menu). On SQLite the lookup first runs on the event-loop thread within a 2 ms
budget (``inline_sqlite``): a thread hop costs more CPU than the query; anything slow,
locked or failing goes the aiosqlite way, one lookup at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.domain.models import CallerHistory, HistoryEvent, KnownField
from ivr_engine.personalize.contacts import CALL_FOLLOW_UP_EVENT_TYPES
from ivr_engine.ports import LookupResult
from ivr_engine.timeline.inline_sqlite import InlineDeclined, InlineSqlite
from ivr_engine.timeline.lookup_queue import LookupQueue, Pending, Row
from ivr_engine.timeline.pg_connect import connect_postgres
from ivr_engine.timeline.urls import DatabaseUrl, parse_database_url, redact

APPLICATION_NAME = "ivr-engine-lookup"


def _sql_list(values: frozenset[str]) -> str:
    """Constant event types as an SQL list (checked: letters, digits, ``.`` and ``_``)."""
    for value in values:
        if not re.fullmatch(r"[a-z0-9_.]+", value):
            raise ValueError(f"not a plain event type: {value!r}")
    return ", ".join(f"'{value}'" for value in sorted(values))


# A call's follow-up events (the bridge's call.transferred ... call.ended, the tracker's
# call.agent_*) are never contacts: left out, so the window of ``max_events`` holds the
# caller's contacts rather than the last few bridged calls' 7-10 events each. The filter
# reads the covering index ix_timeline_events_customer_recent (event_type is in it).
_NOT_FOLLOW_UP = f"t.event_type NOT IN ({_sql_list(CALL_FOLLOW_UP_EVENT_TYPES)})"

# The per-customer parts of the PostgreSQL lookup, shared by the one-phone statement and
# the batch: the newest events (up to a limit) and the known fields of customer ``c``.
_PG_EVENTS = f"""(SELECT json_agg(json_build_array(e.occurred_at, e.channel, e.event_type,
                                  e.intent, e.case_id) ORDER BY e.occurred_at DESC, e.seq DESC)
   FROM (SELECT t.seq, t.occurred_at, t.channel, t.event_type, t.intent, t.case_id
           FROM timeline_events t WHERE t.customer_id = c.id AND {_NOT_FOLLOW_UP}
          ORDER BY t.occurred_at DESC, t.seq DESC LIMIT {{limit}}) e)"""
_PG_FIELDS = """(SELECT json_agg(json_build_array(f.name, f.value, f.source_channel,
                                  f.updated_at, f.verified))
   FROM known_fields f WHERE f.customer_id = c.id)"""
_PG_IDS = """SELECT DISTINCT customer_id FROM identities
    WHERE kind = {kind} AND value = {value} LIMIT 2"""

PG_LOOKUP_SQL = f"""\
WITH ids AS MATERIALIZED ({_PG_IDS.format(kind="$1", value="$2")}
), hit AS (
    SELECT count(*) AS n, min(customer_id) AS customer_id FROM ids
)
SELECT hit.n, c.id, c.display_name, {_PG_EVENTS.format(limit="$3")} AS events,
    {_PG_FIELDS} AS fields
FROM hit LEFT JOIN customers c ON hit.n = 1 AND c.id = hit.customer_id"""

# Many lookups in one statement: one row per (kind, value, max_events), numbered from 1 in
# the arrays' order, each the same as PG_LOOKUP_SQL's row for it.
PG_BATCH_LOOKUP_SQL = f"""\
SELECT q.i, hit.n, c.id, c.display_name, c.events, c.fields
FROM unnest($1::text[], $2::text[], $3::int8[]) WITH ORDINALITY AS q(kind, value, max_events, i)
CROSS JOIN LATERAL (
    SELECT count(*) AS n, min(ids.customer_id) AS customer_id
    FROM ({_PG_IDS.format(kind="q.kind", value="q.value")}) ids
) hit
LEFT JOIN LATERAL (
    SELECT c.id, c.display_name, {_PG_EVENTS.format(limit="q.max_events")} AS events,
        {_PG_FIELDS} AS fields
    FROM customers c WHERE hit.n = 1 AND c.id = hit.customer_id
) c ON true
ORDER BY q.i"""
PG_BATCH_CAP = 32  # lookups in one statement, at most

# json_group_array keeps the subquery's order in practice, but SQLite does not promise
# it before 3.44: seq is returned too and the rows are sorted again in Python.
SQLITE_LOOKUP_SQL = f"""\
WITH ids AS (
    SELECT DISTINCT customer_id FROM identities WHERE kind = ?1 AND value = ?2 LIMIT 2
), hit AS (
    SELECT count(*) AS n, min(customer_id) AS customer_id FROM ids
)
SELECT hit.n, c.id, c.display_name,
    (SELECT json_group_array(json_array(e.occurred_at, e.channel, e.event_type, e.intent,
                                        e.case_id, e.seq))
       FROM (SELECT t.seq, t.occurred_at, t.channel, t.event_type, t.intent, t.case_id
               FROM timeline_events t WHERE t.customer_id = c.id AND {_NOT_FOLLOW_UP}
              ORDER BY t.occurred_at DESC, t.seq DESC LIMIT ?3) e) AS events,
    (SELECT json_group_array(json_array(f.name, f.value, f.source_channel, f.updated_at,
                                        f.verified))
       FROM known_fields f WHERE f.customer_id = c.id) AS fields
FROM hit LEFT JOIN customers c ON hit.n = 1 AND c.id = hit.customer_id"""

# For this connection's lookup statements only. Bitmap scans off: the planner estimates an
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


class _Postgres:
    def __init__(self, url: DatabaseUrl, connect_timeout_s: float, batch_cap: int) -> None:
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
        self._url = url
        self._timeout = connect_timeout_s
        self.batch_cap = batch_cap

    async def connect(self) -> Any:
        return await connect_postgres(
            self._url,
            connect_timeout_s=self._timeout,
            max_cached_statement_lifetime=0,
            server_settings=PG_SESSION_SETTINGS,
        )

    async def fetch(self, conn: Any, batch: Sequence[Pending]) -> list[Row]:
        if len(batch) == 1:
            one = batch[0]
            return [await conn.fetchrow(PG_LOOKUP_SQL, one.kind, one.value, one.max_events)]
        rows = await conn.fetch(
            PG_BATCH_LOOKUP_SQL,
            [p.kind for p in batch],
            [p.value for p in batch],
            [p.max_events for p in batch],
        )
        if [row[0] for row in rows] != list(range(1, len(batch) + 1)):
            return []  # not one row per lookup in order: the queue fails them all
        return [tuple(row)[1:] for row in rows]

    def discard(self, conn: Any) -> None:
        conn.terminate()  # no round trip; the server notices the closed socket

    async def close(self, conn: Any) -> None:
        await conn.close(timeout=2)


class _Sqlite:
    errors = _SQLITE_ERRORS
    batch_cap = 1

    def __init__(self, path: Path, busy_timeout_s: float) -> None:
        # mode=rw: a missing file is an error, not a new empty database.
        self._uri = f"{path.as_uri()}?mode=rw"
        self._timeout = busy_timeout_s
        self.closing: set[asyncio.Task[None]] = set()

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

    async def fetch(self, conn: aiosqlite.Connection, batch: Sequence[Pending]) -> list[Row]:
        (one,) = batch  # batch_cap 1
        rows = await conn.execute_fetchall(SQLITE_LOOKUP_SQL, (one.kind, one.value, one.max_events))
        return [next(iter(rows))]

    def discard(self, conn: aiosqlite.Connection) -> None:
        task = asyncio.get_running_loop().create_task(self.close(conn))
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)

    async def close(self, conn: aiosqlite.Connection) -> None:
        try:
            await conn.close()
        except (sqlite3.Error, ValueError):
            conn.stop()


class FastCallerLookup:
    """``CallerLookup`` on raw asyncpg / aiosqlite; at most ``pool_size`` connections.

    ``batch_cap``: on PostgreSQL, lookups answered by one statement at most (1: one
    statement per lookup, as on SQLite)."""

    def __init__(
        self,
        database_url: str,
        *,
        pool_size: int = 4,
        connect_timeout_s: float = 5.0,
        inline: bool = True,
        batch_cap: int = PG_BATCH_CAP,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if batch_cap < 1:
            raise ValueError("batch_cap must be at least 1")
        url = parse_database_url(database_url)
        self._driver: _Postgres | _Sqlite
        self._inline: InlineSqlite | None = None
        if url.postgres_dsn is not None:
            self._driver = _Postgres(url, connect_timeout_s, batch_cap)
        else:
            assert url.sqlite_path is not None
            self._driver = _Sqlite(url.sqlite_path, min(connect_timeout_s, 1.0))
            if inline:
                self._inline = InlineSqlite(url.sqlite_path)
        self._decode = _decode_postgres if url.dialect == "postgresql" else _decode_sqlite
        self._queue = LookupQueue(self._driver, pool_size, redact(database_url))

    async def lookup(self, kind: str, value: str, *, max_events: int) -> LookupResult:
        """One lookup. A caller that gives up (its decision deadline cancels it) does not
        cut the query off: the query finishes in the background and its connection goes
        back to the pool (terminating a connection mid-query costs a reconnect, and
        cancelling a statement costs the server a cancel request). A query that has not
        started when its caller gave up is skipped."""
        if max_events < 0:
            raise ValueError("max_events must not be negative")
        if self._inline is not None and not self._queue.closed:
            try:
                row = self._inline.fetch_one(SQLITE_LOOKUP_SQL, (kind, value, max_events))
            except InlineDeclined:
                pass  # the worker-thread path below, with its timeouts and errors
            else:
                return self._decoded(row)
        return self._decoded(await self._queue.submit(kind, value, max_events))

    def _decoded(self, row: Row | None) -> LookupResult:
        try:
            if row is None:
                raise ValueError("the lookup returned no row")
            return self._decode(row)
        except _DECODE_ERRORS as exc:
            raise TimelineUnavailable(f"undecodable lookup result: {exc!r}") from exc

    async def warm_up(self) -> bool:
        """Open one connection ahead of the first call (connecting can take longer than the
        decision deadline on a cold start). False, not an error, when the database is down:
        calls then get the static menu until it answers."""
        if self._inline is not None:
            with contextlib.suppress(InlineDeclined):  # the worker path is opened below
                self._inline.fetch_one("SELECT 1", ())
        return await self._queue.warm_up()

    async def close(self) -> None:
        self._queue.closed = True  # no new lookups, inline ones included
        if self._inline is not None:
            self._inline.close()
        await self._queue.close()
        if isinstance(self._driver, _Sqlite) and self._driver.closing:
            await asyncio.gather(*self._driver.closing, return_exceptions=True)


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
