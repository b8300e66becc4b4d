"""The per-call write path: a batch of finished calls in ONE transaction on the raw driver.

SQLAlchemy Core cost about 3.5 ms of CPU per call here (two transactions: events, then
fields); measured side by side in bench/results.md. This writer does the same writes with
asyncpg (one connection; the whole batch is ONE statement over column arrays, so one round
trip and no BEGIN/COMMIT) or the stdlib ``sqlite3`` module on one private thread (the whole
batch in one hop), and keeps the store's rules:

* an event whose ``event_id`` is stored already is skipped (``ON CONFLICT DO NOTHING``);
* a known field is replaced only by a newer one (``updated_at``);
* writes for a customer merged into another go to the survivor;
* a customer id that does not exist is NOT written and is returned to the caller (the
  recorder then stores that call by phone), so nothing is dropped silently.

It also answers, for the call-event bridge, who owns a batch of phone numbers (one query)
and creates a batch of customers (one transaction, ``create_customers``) with the store's
rule for ``create_customer_for_identity``: re-read under the same per-identity lock (an
advisory lock on PostgreSQL, the write lock on SQLite), reuse the one owner, else create.

Any driver error rolls the batch back and becomes ``TimelineUnavailable``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.domain.models import KnownField
from ivr_engine.ports import CustomerWrite
from ivr_engine.timeline.schema import sqlite_timestamp, to_utc
from ivr_engine.timeline.urls import parse_database_url, redact

T = TypeVar("T")
_EVENT_COLUMNS = (
    "event_id, customer_id, occurred_at, recorded_at, channel, event_type, intent, case_id, data"
)
_FIELD_UPDATE = """ON CONFLICT (customer_id, name) DO UPDATE SET value = excluded.value,
    source_channel = excluded.source_channel, updated_at = excluded.updated_at,
    verified = excluded.verified WHERE known_fields.updated_at < excluded.updated_at"""

# PostgreSQL: the whole batch is ONE statement (one round trip, atomic on its own, no
# BEGIN/COMMIT): each column travels as an array and is unnested; the customers CTE maps
# each id to its survivor, and its rows tell which ids exist.
PG_BATCH = f"""
WITH owners AS (
    SELECT id, COALESCE(merged_into, id) AS owner FROM customers WHERE id = ANY($1::text[])
), new_events AS (
    INSERT INTO timeline_events ({_EVENT_COLUMNS})
    SELECT e.event_id, o.owner, e.occurred_at, $2::timestamptz, e.channel, e.event_type,
           e.intent, e.case_id, e.data::jsonb
    FROM unnest($3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[],
                $8::text[], $9::text[], $10::text[]) WITH ORDINALITY
         AS e(event_id, customer_id, occurred_at, channel, event_type, intent, case_id, data, n)
    JOIN owners o ON o.id = e.customer_id
    ORDER BY e.n  -- rows (and so their seq) in the order of the batch
    ON CONFLICT (event_id) DO NOTHING
    RETURNING 1
), new_fields AS (
    INSERT INTO known_fields (customer_id, name, value, source_channel, updated_at, verified)
    SELECT DISTINCT ON (o.owner, f.name) o.owner, f.name, f.value, f.source_channel,
           f.updated_at, f.verified
    FROM unnest($11::text[], $12::text[], $13::text[], $14::text[], $15::timestamptz[],
                $16::bool[])
         AS f(customer_id, name, value, source_channel, updated_at, verified)
    JOIN owners o ON o.id = f.customer_id
    ORDER BY o.owner, f.name, f.updated_at DESC
    {_FIELD_UPDATE}
    RETURNING 1
)
SELECT id FROM owners
"""
PG_PHONE_OWNERS = """
SELECT value, array_agg(DISTINCT customer_id ORDER BY customer_id) FROM identities
WHERE kind = 'phone' AND value = ANY($1::text[]) GROUP BY value"""
# the store's create_customer_for_identity lock key, taken in key order (no deadlock)
PG_LOCK_PHONES = """
SELECT pg_advisory_xact_lock(h) FROM (
    SELECT DISTINCT hashtext('phone' || chr(31) || p) AS h FROM unnest($1::text[]) AS p
    ORDER BY h) AS keys"""
PG_NEW_CUSTOMERS = """
INSERT INTO customers (id, display_name, created_at, updated_at)
SELECT id, NULL, $2, $2 FROM unnest($1::text[]) AS id"""
PG_NEW_PHONES = """
INSERT INTO identities (customer_id, kind, value)
SELECT c, 'phone', p FROM unnest($1::text[], $2::text[]) AS t(c, p)
ON CONFLICT (customer_id, kind, value) DO NOTHING"""
SQLITE_PHONE_OWNERS = (
    "SELECT DISTINCT value, customer_id FROM identities WHERE kind = 'phone' AND value IN ({})"
)
SQLITE_NEW_CUSTOMER = (
    "INSERT INTO customers (id, display_name, created_at, updated_at) VALUES (?, NULL, ?, ?)"
)
SQLITE_NEW_PHONE = (
    "INSERT INTO identities (customer_id, kind, value) VALUES (?, 'phone', ?) "
    "ON CONFLICT (customer_id, kind, value) DO NOTHING"
)
SQLITE_EVENT = (
    f"INSERT INTO timeline_events ({_EVENT_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)
SQLITE_FIELD = (
    "INSERT INTO known_fields (customer_id, name, value, source_channel, updated_at, verified) "
    f"VALUES (?, ?, ?, ?, ?, ?) {_FIELD_UPDATE}"
)


def _json(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _newest_fields(fields: Sequence[KnownField]) -> list[KnownField]:
    newest: dict[str, KnownField] = {}
    for f in fields:
        if f.name not in newest or f.updated_at > newest[f.name].updated_at:
            newest[f.name] = f
    return sorted(newest.values(), key=lambda f: f.name)


class FastCallWriter:
    """``write(batch)`` → the customer ids that do not exist (their writes were skipped)."""

    def __init__(self, database_url: str, *, connect_timeout_s: float = 5.0) -> None:
        url = parse_database_url(database_url)
        self._where = redact(database_url)
        self._pg_dsn = url.postgres_dsn
        self._sqlite_path: Path | None = url.sqlite_path
        self._timeout = connect_timeout_s
        self._pg: asyncpg.Connection | None = None
        self._sqlite: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="timeline-writer")
        self._lock = asyncio.Lock()

    async def write(self, batch: Sequence[CustomerWrite]) -> set[str]:
        if not batch:
            return set()
        now = datetime.now(UTC)
        async with self._lock:
            if self._pg_dsn is not None:
                return await self._write_pg(batch, now)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._write_sqlite, batch, now)

    async def phone_owners(self, phones: Sequence[str]) -> dict[str, list[str]]:
        """Each phone number owned by someone → its owners' ids (sorted; all of them)."""
        if not phones:
            return {}
        async with self._lock:
            if self._pg_dsn is not None:
                rows = await self._pg_call(lambda c: c.fetch(PG_PHONE_OWNERS, list(phones)))
                return {row[0]: list(row[1]) for row in rows}
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._owners_sqlite, phones)

    async def create_customers(self, phones: Sequence[str | None]) -> list[str]:
        """One customer per entry, in one transaction: ``None`` → a new customer without
        identities; a phone → its one owner if exactly one customer owns it now (a
        concurrent creator's), else a new customer owning it (``create_customer_for_identity``)."""
        if not phones:
            return []
        now = datetime.now(UTC)
        async with self._lock:
            if self._pg_dsn is not None:
                return await self._pg_call(lambda c: _create_pg(c, phones, now))
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._create_sqlite, phones, now)

    async def close(self) -> None:
        async with self._lock:
            if self._pg is not None:
                conn, self._pg = self._pg, None
                try:
                    await asyncio.wait_for(conn.close(), 2)
                except (OSError, asyncpg.PostgresError, TimeoutError):
                    conn.terminate()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._thread, self._close_sqlite)
        self._thread.shutdown(wait=False)

    # ------------------------------------------------------------------ PostgreSQL

    async def _write_pg(self, batch: Sequence[CustomerWrite], now: datetime) -> set[str]:
        ids = sorted({w.customer_id for w in batch})
        columns = _pg_columns(batch)
        found = await self._pg_call(lambda c: c.fetch(PG_BATCH, ids, now, *columns))
        return set(ids) - {row[0] for row in found}

    async def _pg_call(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``work`` on the connection (made if needed); any failure drops the connection."""
        try:
            if self._pg is None or self._pg.is_closed():
                assert self._pg_dsn is not None
                self._pg = await asyncpg.connect(
                    self._pg_dsn,
                    timeout=self._timeout,
                    server_settings={"application_name": "ivr-engine-writer"},
                )
            return await work(self._pg)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            if self._pg is not None:
                self._pg.terminate()
                self._pg = None
            raise TimelineUnavailable(f"timeline write failed on {self._where}: {exc!r}") from exc

    # ------------------------------------------------------------------ SQLite (own thread)

    def _write_sqlite(self, batch: Sequence[CustomerWrite], now: datetime) -> set[str]:
        try:
            conn = self._sqlite_connection()
            ids = sorted({w.customer_id for w in batch})
            marks = ", ".join("?" * len(ids))
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = conn.execute(
                    f"SELECT id, COALESCE(merged_into, id) FROM customers WHERE id IN ({marks})",
                    ids,
                ).fetchall()
                owners = {row[0]: row[1] for row in found}
                events, fields = _rows(batch, owners, now, sqlite_timestamp, _json)
                conn.executemany(SQLITE_EVENT, events)
                conn.executemany(SQLITE_FIELD, fields)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._close_sqlite()
            raise TimelineUnavailable(f"timeline write failed on {self._where}: {exc!r}") from exc
        return set(ids) - set(owners)

    def _owners_sqlite(self, phones: Sequence[str]) -> dict[str, list[str]]:
        try:
            conn = self._sqlite_connection()
            sql = SQLITE_PHONE_OWNERS.format(", ".join("?" * len(phones)))
            rows = conn.execute(sql, list(phones)).fetchall()
        except sqlite3.Error as exc:
            self._close_sqlite()
            raise TimelineUnavailable(f"timeline read failed on {self._where}: {exc!r}") from exc
        return _group_owners(rows)

    def _create_sqlite(self, phones: Sequence[str | None], now: datetime) -> list[str]:
        try:
            conn = self._sqlite_connection()
            stamp = sqlite_timestamp(now)
            conn.execute("BEGIN IMMEDIATE")  # the write lock: creators are serialised
            try:
                wanted = sorted({p for p in phones if p is not None})
                sql = SQLITE_PHONE_OWNERS.format(", ".join("?" * len(wanted)))
                owners = _group_owners(conn.execute(sql, wanted).fetchall() if wanted else [])
                ids, new, identities = _plan_creation(phones, owners)
                conn.executemany(SQLITE_NEW_CUSTOMER, [(c, stamp, stamp) for c in new])
                conn.executemany(SQLITE_NEW_PHONE, identities)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._close_sqlite()
            raise TimelineUnavailable(f"timeline write failed on {self._where}: {exc!r}") from exc
        return ids

    def _sqlite_connection(self) -> sqlite3.Connection:
        if self._sqlite is None:
            assert self._sqlite_path is not None
            uri = f"{self._sqlite_path.as_uri()}?mode=rw"
            conn = sqlite3.connect(uri, uri=True, timeout=self._timeout, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._sqlite = conn
        return self._sqlite

    def _close_sqlite(self) -> None:
        if self._sqlite is not None:
            conn, self._sqlite = self._sqlite, None
            conn.close()


async def _create_pg(
    conn: asyncpg.Connection, phones: Sequence[str | None], now: datetime
) -> list[str]:
    wanted = sorted({p for p in phones if p is not None})
    async with conn.transaction():
        if wanted:
            await conn.execute(PG_LOCK_PHONES, wanted)
            rows = await conn.fetch(PG_PHONE_OWNERS, wanted)
        owners = {row[0]: list(row[1]) for row in rows} if wanted else {}
        ids, new, identities = _plan_creation(phones, owners)
        await conn.execute(PG_NEW_CUSTOMERS, new, now)
        if identities:
            await conn.execute(
                PG_NEW_PHONES, [c for c, _ in identities], [p for _, p in identities]
            )
    return ids


def _group_owners(rows: Sequence[Any]) -> dict[str, list[str]]:
    owners: dict[str, list[str]] = {}
    for phone, customer_id in rows:
        owners.setdefault(phone, []).append(customer_id)
    return {phone: sorted(ids) for phone, ids in owners.items()}


def _plan_creation(
    phones: Sequence[str | None], owners: dict[str, list[str]]
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(the customer of each entry, customers to insert, (customer, phone) to insert).
    A phone listed twice gets one customer; ``None`` always gets its own."""
    ids: list[str] = []
    new: list[str] = []
    identities: list[tuple[str, str]] = []
    chosen: dict[str, str] = {}
    for phone in phones:
        if phone is not None and phone in chosen:
            ids.append(chosen[phone])
            continue
        found = owners.get(phone, []) if phone is not None else []
        if len(found) == 1:
            customer_id = found[0]
        else:
            customer_id = str(uuid.uuid4())
            new.append(customer_id)
            if phone is not None:
                identities.append((customer_id, phone))
        if phone is not None:
            chosen[phone] = customer_id
        ids.append(customer_id)
    return ids, new, identities


def _pg_columns(batch: Sequence[CustomerWrite]) -> list[list[Any]]:
    """The batch as 14 column arrays: 8 for events, 6 for fields (by customer as written;
    the statement maps customers to their survivors and keeps each field's newest value)."""
    events: list[list[Any]] = [[] for _ in range(8)]
    fields: list[list[Any]] = [[] for _ in range(6)]
    for write in batch:
        for e in write.events:
            row: tuple[Any, ...] = (
                e.event_id, write.customer_id, to_utc(e.occurred_at), e.channel, e.event_type,
                e.intent, e.case_id, _json(dict(e.data)),
            )  # fmt: skip
            for column, value in zip(events, row, strict=True):
                column.append(value)
        for f in write.fields:
            row = (
                write.customer_id, f.name, f.value, f.source_channel, to_utc(f.updated_at),
                bool(f.verified),
            )  # fmt: skip
            for column, value in zip(fields, row, strict=True):
                column.append(value)
    return events + fields


def _rows(
    batch: Sequence[CustomerWrite],
    owners: dict[str, str],
    now: datetime,
    timestamp: Any,
    encode: Any,
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    events: list[tuple[Any, ...]] = []
    fields: list[tuple[Any, ...]] = []
    recorded = timestamp(now)
    for write in batch:
        owner = owners.get(write.customer_id)
        if owner is None:
            continue
        for e in write.events:
            events.append(
                (
                    e.event_id,
                    owner,
                    timestamp(e.occurred_at),
                    recorded,
                    e.channel,
                    e.event_type,
                    e.intent,
                    e.case_id,
                    encode(dict(e.data)),
                )
            )
        for f in _newest_fields(write.fields):
            verified = bool(f.verified)
            fields.append(
                (owner, f.name, f.value, f.source_channel, timestamp(f.updated_at), verified)
            )
    return events, fields
