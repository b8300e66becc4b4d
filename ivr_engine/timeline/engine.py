"""SQLAlchemy async engines for the store: SQLite pragmas, transaction modes, error mapping.

* PostgreSQL (asyncpg): reads run in AUTOCOMMIT (no BEGIN/ROLLBACK round trips); writes
  run in explicit transactions. Pre-ping on checkout: a restarted server costs no write.
* SQLite (aiosqlite): the driver's implicit transactions are switched off and SQLAlchemy
  emits ``BEGIN`` itself — ``BEGIN IMMEDIATE`` for writes, so concurrent writers queue on
  the busy timeout instead of failing to upgrade a read lock. WAL, ``synchronous=NORMAL``
  and foreign keys are set on every connection.

A value the database cannot hold (SQLSTATE class 22, data exception: a character the
database's encoding lacks, a value too long, an invalid number) is the request's fault, not
an outage: ``TimelineDataRejected`` (the API answers 400 ``value_rejected``, not 503).

A write refused because the server is read-only (SQLSTATE 25006: it became a standby, a
failover without a restart) counts as a disconnect: the pool is emptied, and the next
connection goes to the server now writable (``pg_connect``), not to the same standby.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, ExceptionContext
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ivr_engine.domain.errors import TimelineDataRejected, TimelineUnavailable
from ivr_engine.timeline.pg_connect import engine_options
from ivr_engine.timeline.urls import DatabaseUrl, redact

SQLITE_BUSY_TIMEOUT_S = 5.0
_BEGIN_OPTION = "ivr_sqlite_begin"
DB_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, OSError, TimeoutError)
DATA_EXCEPTION = "22"  # SQLSTATE class: the database refuses the value itself
READ_ONLY_SQL_TRANSACTION = "25006"  # a write on a standby


@dataclass(frozen=True, slots=True)
class Engines:
    """One pool, two views of it: ``read`` (no transaction on PG) and ``write``."""

    base: AsyncEngine
    read: AsyncEngine
    write: AsyncEngine
    dialect: str
    where: str  # redacted URL, for messages

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.read.connect() as conn:
                yield conn
        except DB_ERRORS as exc:
            raise _db_error(self.where, exc) from exc

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.write.begin() as conn:
                yield conn
        except DB_ERRORS as exc:
            raise _db_error(self.where, exc) from exc

    async def dispose(self) -> None:
        await self.base.dispose()


def create_engines(url: DatabaseUrl, database_url: str, pool_size: int) -> Engines:
    where = redact(database_url)
    if url.dialect == "postgresql":
        base = create_async_engine(
            url.async_url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            skip_autocommit_rollback=True,
            **engine_options(
                url,
                connect_timeout_s=5,
                server_settings={"application_name": "ivr-engine-store", "TimeZone": "UTC"},
            ),
        )
        event.listen(base.sync_engine, "handle_error", _read_only_is_a_disconnect)
        read = base.execution_options(isolation_level="AUTOCOMMIT")
        return Engines(base, read, base, "postgresql", where)
    base = create_async_engine(
        url.async_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
    )
    event.listen(base.sync_engine, "connect", _sqlite_connect)
    event.listen(base.sync_engine, "begin", _sqlite_begin)
    write = base.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
    return Engines(base, base, write, "sqlite", where)


def _read_only_is_a_disconnect(context: ExceptionContext) -> None:
    if getattr(context.original_exception, "sqlstate", None) == READ_ONLY_SQL_TRANSACTION:
        context.is_disconnect = True  # SQLAlchemy then empties the pool


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # no implicit BEGIN from the driver
    cursor = dbapi_connection.cursor()
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))


def _db_error(where: str, exc: BaseException) -> TimelineUnavailable:
    """``TimelineDataRejected`` for a data exception (PostgreSQL's SQLSTATE class 22, which
    SQLAlchemy's asyncpg adapter keeps as ``orig.sqlstate``), else ``TimelineUnavailable``."""
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(DATA_EXCEPTION):
        return TimelineDataRejected(f"the database refused a value ({_detail(exc)})")
    return TimelineUnavailable(_message(where, exc))


def _detail(exc: BaseException) -> str:
    """The driver's own first line, without asyncpg's ``<class '...'>: `` prefix."""
    text = str(getattr(exc, "orig", None) or exc)
    first = text.splitlines()[0] if text else repr(exc)
    return first.split(">: ", 1)[1] if first.startswith("<class ") and ">: " in first else first


def _message(where: str, exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    detail = text.splitlines()[0] if text else repr(exc)
    return f"timeline database {where} unavailable: {type(exc).__name__}: {detail}"
