"""Alembic environment for the timeline schema (async engines: aiosqlite / asyncpg).

Where the database comes from, first match wins:

1. ``config.attributes["connection"]``: a synchronous ``Connection`` (e.g. from
   ``AsyncConnection.run_sync``) — used as is;
2. ``config.attributes["database_url"]`` or the ``sqlalchemy.url`` option: a user URL
   (``sqlite:///...``, ``postgresql://...``) or an async SQLAlchemy URL.

``ivr_engine.timeline.migrate.upgrade`` is the supported entry point; a plain
``alembic upgrade head`` with ``script_location`` pointing here works too.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ivr_engine.timeline.pg_connect import engine_options
from ivr_engine.timeline.schema import metadata
from ivr_engine.timeline.urls import DatabaseUrl, parse_database_url

config = context.config
target_metadata = metadata

# Any constant will do: serialises concurrent ``migrate`` runs against one PostgreSQL DB.
_PG_MIGRATION_LOCK = 0x1F7E_11E0
MIGRATE_CONNECT_TIMEOUT_S = 10.0  # per server, when the URL lists several


def _database_url() -> DatabaseUrl:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: set config.attributes['database_url']")
    return parse_database_url(str(url))


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url().async_url_string,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        migration = context.get_context()
        # read under the lock, for ``upgrade`` to say what it did
        config.attributes["revision_before"] = migration.get_current_revision()
        context.run_migrations()
        config.attributes["revision_after"] = migration.get_current_revision()


async def run_async_migrations() -> None:
    url = _database_url()
    # several servers: connected as everywhere else (pg_connect), to the writable one
    options = (
        engine_options(url, connect_timeout_s=MIGRATE_CONNECT_TIMEOUT_S) if url.servers else {}
    )
    engine = create_async_engine(url.async_url_string, poolclass=pool.NullPool, **options)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
