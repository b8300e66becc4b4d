"""The per-call write path: a batch of finished calls in ONE transaction on the raw driver.

SQLAlchemy Core cost about 3.5 ms of CPU per call here (two transactions: events, then
fields); measured side by side in bench/results.md. This writer does the same writes with
asyncpg (one connection; the whole batch is ONE statement over column arrays, so one round
trip and no BEGIN/COMMIT) or the stdlib ``sqlite3`` module on one private thread (the whole
batch in one hop; first tried on the event-loop thread within a 2 ms budget with no busy
wait, ``inline_sqlite``, since a thread hop costs more CPU than the write), and keeps the
store's rules:

* an event whose ``event_id`` is stored already is skipped (``ON CONFLICT DO NOTHING``);
* a known field is replaced only by a newer one (``updated_at``);
* a saved account number gives its customer the ``account`` identity unless another
  customer owns it (``fast_accounts``; PostgreSQL then writes the batch in a transaction);
* writes for a customer merged into another go to the survivor;
* a customer id that does not exist is NOT written and is returned to the caller (the
  recorder then stores that call by phone), so nothing is dropped silently.

It also answers, for the call-event bridge, who owns a batch of phone numbers (one query)
and creates a batch of customers (one transaction, ``create_customers``) with the store's
rule for ``create_customer_for_identity``: re-read under the same per-identity lock (an
advisory lock on PostgreSQL, the write lock on SQLite), reuse the one owner, else create.

Any driver error rolls the batch back and becomes ``TimelineUnavailable``; the database
refusing the data itself (PostgreSQL SQLSTATE classes 22 and 23, sqlite3's ``DataError`` and
``IntegrityError``) becomes its subclass ``TimelineDataRejected``. The statements
are in ``fast_sql.py``, the pure row building in ``fast_rows.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ivr_engine.domain.errors import TimelineDataRejected, TimelineUnavailable
from ivr_engine.ports import CustomerWrite, StoredCallEvent
from ivr_engine.timeline.fast_accounts import (
    batch_saves_account,
    claim_accounts_pg,
    claim_accounts_sqlite,
)
from ivr_engine.timeline.fast_rows import (
    EventRow,
    group_owners,
    json_text,
    pg_columns,
    pg_row_columns,
    plan_creation,
    row_tuples,
    sqlite_event_rows,
    sqlite_time_text,
)
from ivr_engine.timeline.fast_sql import (
    PG_BATCH,
    PG_LOCK_PHONES,
    PG_NEW_CUSTOMERS,
    PG_NEW_PHONES,
    PG_PHONE_OWNERS,
    PG_STORED_EVENTS,
    SQLITE_EVENT,
    SQLITE_FIELD,
    SQLITE_NEW_CUSTOMER,
    SQLITE_NEW_PHONE,
    SQLITE_PHONE_OWNERS,
    SQLITE_STORED_EVENTS,
)
from ivr_engine.timeline.inline_sqlite import InlineDeclined, InlineSqlite
from ivr_engine.timeline.pg_connect import connect_postgres
from ivr_engine.timeline.schema_hint import migrate_hint
from ivr_engine.timeline.timestamps import to_utc
from ivr_engine.timeline.urls import parse_database_url, redact

if TYPE_CHECKING:  # imported when a PostgreSQL URL is used (_pg_call), not on SQLite
    import asyncpg

T = TypeVar("T")
log = logging.getLogger(__name__)
DATA_ERROR_CLASSES = ("22", "23")  # SQLSTATE: data exception, integrity constraint violation
CHECKPOINT_EVERY = 100  # loop-thread commits between WAL checkpoints on the worker


class FastCallWriter:
    """``write(batch)`` → the customer ids that do not exist (their writes were skipped)."""

    def __init__(
        self, database_url: str, *, connect_timeout_s: float = 5.0, inline: bool = True
    ) -> None:
        url = parse_database_url(database_url)
        self._where = redact(database_url)
        self._url = url
        self._pg_dsn = url.postgres_dsn
        self._sqlite_path: Path | None = url.sqlite_path
        self._timeout = connect_timeout_s
        self._pg: asyncpg.Connection | None = None
        self._sqlite: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="timeline-writer")
        self._lock = asyncio.Lock()
        self._inline: InlineSqlite | None = None
        if url.sqlite_path is not None and inline:
            self._inline = InlineSqlite(url.sqlite_path, writes=True)

    async def write(self, batch: Sequence[CustomerWrite]) -> set[str]:
        if not batch:
            return set()
        now = datetime.now(UTC)
        async with self._lock:
            if self._pg_dsn is not None:
                ids = sorted({w.customer_id for w in batch})
                if batch_saves_account(batch):  # rare: a caller keyed in an account number
                    columns = pg_columns(batch)
                    return await self._pg_call(lambda c: _write_pg_claiming(c, ids, now, columns))
                return await self._write_pg(ids, now, pg_columns(batch))
            return await self._write_sqlite(lambda conn: _sqlite_write(conn, batch, now))

    async def write_rows(self, rows: Sequence[EventRow]) -> set[str]:
        """Events already in row form (the call bridge's), in one transaction with the same
        rules as ``write``, in their order; returns the customer ids that do not exist."""
        if not rows:
            return set()
        now = datetime.now(UTC)
        async with self._lock:
            if self._pg_dsn is not None:
                ids = sorted({r.customer_id for r in rows})
                return await self._write_pg(ids, now, pg_row_columns(rows))
            return await self._write_sqlite(lambda conn: _sqlite_write_rows(conn, rows, now))

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

    async def stored_events(self, event_ids: Sequence[str]) -> dict[str, StoredCallEvent]:
        """The events stored under any of ``event_ids`` (a replayed call's, or another's)."""
        if not event_ids:
            return {}
        async with self._lock:
            if self._pg_dsn is not None:
                rows = await self._pg_call(lambda c: c.fetch(PG_STORED_EVENTS, list(event_ids)))
            else:
                sql = SQLITE_STORED_EVENTS.format(", ".join("?" * len(event_ids)))
                loop = asyncio.get_running_loop()
                rows = await loop.run_in_executor(
                    self._thread,
                    lambda: self._sqlite_call(
                        lambda c: c.execute(sql, list(event_ids)).fetchall(), write=False
                    ),
                )
        return {row[0]: _stored_call_event(row) for row in rows}

    async def create_customers(
        self, phones: Sequence[str | None], keys: Sequence[str | None] = ()
    ) -> list[str]:
        """One customer per entry, in one transaction: ``None`` → a new customer without
        identities; a phone → its one owner if exactly one customer owns it now (a
        concurrent creator's), else a new customer owning it (``create_customer_for_identity``).
        ``keys`` (one per entry) make the new customers' ids (``plan_creation``)."""
        if not phones:
            return []
        now = datetime.now(UTC)
        async with self._lock:
            if self._pg_dsn is not None:
                return await self._pg_call(lambda c: _create_pg(c, phones, keys, now))
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._create_sqlite, phones, keys, now)

    async def close(self) -> None:
        async with self._lock:
            if self._inline is not None:
                self._inline.close()
            if self._pg is not None:
                import asyncpg  # loaded by _pg_call, which made the connection

                conn, self._pg = self._pg, None
                try:
                    async with asyncio.timeout(2):  # not wait_for: 3.11's can lose a cancel
                        await conn.close()
                except (OSError, asyncpg.PostgresError, TimeoutError):
                    conn.terminate()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._thread, self._close_sqlite)
        self._thread.shutdown(wait=False)

    # ------------------------------------------------------------------ PostgreSQL

    async def _write_pg(self, ids: list[str], now: datetime, columns: list[list[Any]]) -> set[str]:
        found = await self._pg_call(lambda c: c.fetch(PG_BATCH, ids, now, *columns))
        return set(ids) - {row[0] for row in found}

    async def _pg_call(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``work`` on the connection (made if needed); any failure drops the connection."""
        import asyncpg  # here, not at the top: a process per call on SQLite never loads it

        try:
            if self._pg is None or self._pg.is_closed():
                self._pg = await connect_postgres(
                    self._url,
                    connect_timeout_s=self._timeout,
                    server_settings={"application_name": "ivr-engine-writer"},
                )
            return await work(self._pg)
        except asyncpg.PostgresError as exc:
            if (exc.sqlstate or "")[:2] in DATA_ERROR_CLASSES:  # the connection is fine
                raise TimelineDataRejected(f"{self._where} refused the data: {exc!r}") from exc
            self._drop_pg()
            why = f"{exc!r}{migrate_hint(exc)}"
            raise TimelineUnavailable(f"timeline write failed on {self._where}: {why}") from exc
        except (OSError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._drop_pg()
            why = f"{exc!r}{migrate_hint(exc)}"
            raise TimelineUnavailable(f"timeline write failed on {self._where}: {why}") from exc

    def _drop_pg(self) -> None:
        if self._pg is not None:
            self._pg.terminate()
            self._pg = None

    # ------------------------------------------------------------------ SQLite (own thread)

    async def _write_sqlite(self, work: Callable[[sqlite3.Connection], set[str]]) -> set[str]:
        """``work`` in one write transaction: on the loop thread if it runs there within its
        budget, else on the worker thread (the caller holds the lock)."""
        if self._inline is not None:
            try:
                missing = self._inline.run(work)
            except InlineDeclined:
                pass  # locked, slow or failing: the worker thread, with its busy timeout
            else:
                if self._inline.commits % CHECKPOINT_EVERY == 0:
                    await self._checkpoint()
                return missing
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: self._sqlite_call(work, write=True))

    async def _checkpoint(self) -> None:
        """The loop-thread connection never checkpoints (that writes and syncs the database
        file): every ``CHECKPOINT_EVERY`` of its commits a passive checkpoint runs on the
        worker thread, before the next write (the caller holds the lock), so the WAL is
        reused from its start instead of growing while writes keep coming."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self._checkpoint_sqlite)
        except TimelineUnavailable as exc:  # the batch is committed; retried N commits later
            log.warning("WAL checkpoint failed: %r", exc)

    def _checkpoint_sqlite(self) -> None:
        self._sqlite_call(
            lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall(), write=False
        )

    def _owners_sqlite(self, phones: Sequence[str]) -> dict[str, list[str]]:
        sql = SQLITE_PHONE_OWNERS.format(", ".join("?" * len(phones)))
        rows = self._sqlite_call(lambda c: c.execute(sql, list(phones)).fetchall(), write=False)
        return group_owners(rows)

    def _create_sqlite(
        self, phones: Sequence[str | None], keys: Sequence[str | None], now: datetime
    ) -> list[str]:
        def create(conn: sqlite3.Connection) -> list[str]:
            stamp = sqlite_time_text(now)
            wanted = sorted({p for p in phones if p is not None})
            sql = SQLITE_PHONE_OWNERS.format(", ".join("?" * len(wanted)))
            owners = group_owners(conn.execute(sql, wanted).fetchall() if wanted else [])
            ids, new, identities = plan_creation(phones, owners, keys)
            conn.executemany(SQLITE_NEW_CUSTOMER, [(c, stamp, stamp) for c in new])
            conn.executemany(SQLITE_NEW_PHONE, identities)
            return ids

        return self._sqlite_call(create, write=True)  # the write lock serialises creators

    def _sqlite_call(self, work: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """``work`` on the connection (made if needed), in one ``BEGIN IMMEDIATE`` transaction
        when ``write``; any sqlite3 error drops the connection (``TimelineUnavailable``)."""
        try:
            conn = self._sqlite_connection()
            if not write:
                return work(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return result
        except (sqlite3.DataError, sqlite3.IntegrityError) as exc:
            raise TimelineDataRejected(f"{self._where} refused the data: {exc!r}") from exc
        except sqlite3.Error as exc:
            self._close_sqlite()
            what = "write" if write else "read"
            why = f"{exc!r}{migrate_hint(exc)}"
            raise TimelineUnavailable(f"timeline {what} failed on {self._where}: {why}") from exc

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


def _stored_call_event(row: Sequence[Any]) -> StoredCallEvent:
    """A row of ``*_STORED_EVENTS`` (SQLite: times as UTC text, data as JSON text)."""
    occurred = row[2]
    if isinstance(occurred, str):
        occurred = datetime.fromisoformat(occurred)
    data = json.loads(row[7]) if isinstance(row[7], str | bytes) else row[7]
    return StoredCallEvent(row[1], to_utc(occurred), row[3], row[4], row[5], row[6], data)


def _sqlite_write(
    conn: sqlite3.Connection, batch: Sequence[CustomerWrite], now: datetime
) -> set[str]:
    """The batch's events and fields (in the caller's transaction); the missing customers."""
    ids = sorted({w.customer_id for w in batch})
    owners = _sqlite_survivors(conn, ids)
    events, fields = row_tuples(batch, owners, now, sqlite_time_text, json_text)
    conn.executemany(SQLITE_EVENT, events)
    conn.executemany(SQLITE_FIELD, fields)
    if batch_saves_account(batch):
        claim_accounts_sqlite(conn, sorted(set(owners.values())))
    return set(ids) - set(owners)


def _sqlite_write_rows(
    conn: sqlite3.Connection, rows: Sequence[EventRow], now: datetime
) -> set[str]:
    """``_sqlite_write`` for rows already in row form."""
    ids = sorted({r.customer_id for r in rows})
    owners = _sqlite_survivors(conn, ids)
    conn.executemany(SQLITE_EVENT, sqlite_event_rows(rows, owners, now))
    return set(ids) - set(owners)


def _sqlite_survivors(conn: sqlite3.Connection, ids: list[str]) -> dict[str, str]:
    """Each existing customer id → the customer its writes go to (itself, or its survivor)."""
    marks = ", ".join("?" * len(ids))
    found = conn.execute(
        f"SELECT id, COALESCE(merged_into, id) FROM customers WHERE id IN ({marks})", ids
    ).fetchall()
    return {row[0]: row[1] for row in found}


async def _write_pg_claiming(
    conn: asyncpg.Connection, ids: list[str], now: datetime, columns: list[list[Any]]
) -> set[str]:
    """``PG_BATCH`` and then the account identities of the account numbers it saved, in one
    transaction (the batch statement alone needs none)."""
    async with conn.transaction():
        found = await conn.fetch(PG_BATCH, ids, now, *columns)
        await claim_accounts_pg(conn, sorted({row[1] for row in found}))
    return set(ids) - {row[0] for row in found}


async def _create_pg(
    conn: asyncpg.Connection,
    phones: Sequence[str | None],
    keys: Sequence[str | None],
    now: datetime,
) -> list[str]:
    wanted = sorted({p for p in phones if p is not None})
    async with conn.transaction():
        if wanted:
            await conn.execute(PG_LOCK_PHONES, wanted)
            rows = await conn.fetch(PG_PHONE_OWNERS, wanted)
        owners = {row[0]: list(row[1]) for row in rows} if wanted else {}
        ids, new, identities = plan_creation(phones, owners, keys)
        await conn.execute(PG_NEW_CUSTOMERS, new, now)
        if identities:
            await conn.execute(
                PG_NEW_PHONES, [c for c, _ in identities], [p for _, p in identities]
            )
    return ids
