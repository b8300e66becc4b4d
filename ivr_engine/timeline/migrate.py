"""Programmatic Alembic: ``await upgrade(url)`` creates or upgrades the timeline schema.

No ``alembic.ini`` is needed. Alembic is synchronous (it loads scripts from disk), so it
runs in a worker thread with its own event loop; the caller's loop never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path
from typing import NamedTuple

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from ivr_engine.data_dirs import create_private_file, make_private_dir
from ivr_engine.domain.errors import ConfigError, TimelineUnavailable
from ivr_engine.timeline.pg_connect import connect_postgres
from ivr_engine.timeline.urls import DatabaseUrl, parse_database_url, redact

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SCHEMA_CHECK_TIMEOUT_S = 3.0
_lock = threading.Lock()  # Alembic's ``context`` proxy is process-global


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic ``Config`` for the packaged migrations (``database_url`` optional)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


class Migrated(NamedTuple):
    """The schema revision before and after ``upgrade`` (``None``: no schema)."""

    before: str | None
    after: str | None


async def upgrade(database_url: str, revision: str = "head") -> Migrated:
    """Bring the schema to ``revision``; SQLite: creates the file and its directory.

    Returns the revisions before and after. Raises ``UnsupportedDatabaseUrl`` for a bad URL
    and ``TimelineUnavailable`` when the database cannot be reached or written.
    """
    url = parse_database_url(database_url)
    try:
        return await asyncio.to_thread(_upgrade_blocking, url, database_url, revision)
    except (SQLAlchemyError, OSError, sqlite3.Error) as exc:
        raise TimelineUnavailable(
            f"cannot migrate {redact(database_url)}: {type(exc).__name__}: {exc}"
        ) from exc


def _upgrade_blocking(url: DatabaseUrl, database_url: str, revision: str) -> Migrated:
    if url.sqlite_path is not None:
        make_private_dir(url.sqlite_path.parent)
        create_private_file(url.sqlite_path)  # customer data: 0600, not SQLite's 0644
        _enable_wal(url.sqlite_path)
    config = alembic_config(database_url)
    with _lock:
        command.upgrade(config, revision)
    attributes = config.attributes  # set by migrations/env.py, under the migration lock
    return Migrated(attributes.get("revision_before"), attributes.get("revision_after"))


def _enable_wal(path: Path) -> None:
    """WAL is persistent in the file: readers (the per-call lookup) never wait on writers."""
    connection = sqlite3.connect(path, timeout=5.0)
    try:
        connection.execute("PRAGMA journal_mode=WAL").fetchone()
    finally:
        connection.close()


async def check_schema_current(database_url: str) -> None:
    """Refuse to start on a reachable database whose schema is behind this code.

    Un-migrated PostgreSQL (``ivr-engine migrate`` forgotten) would otherwise start "ready"
    and serve every caller the static menu, the cause hidden in per-call tracebacks. Raises
    ``ConfigError`` naming the revisions and the command; a revision this code does not know
    (a newer engine migrated the database) is logged and allowed. An unreachable database
    is not an error here: the engine starts and serves static menus until it comes back.
    A server that answers but refuses the configured role, password or database is: that
    is a typo in ``database_url``, not an outage (``ConfigError`` with the server's words).
    """
    url = parse_database_url(database_url)
    if url.postgres_dsn is None:
        return  # SQLite is migrated at start by whoever opens it (open_timeline)
    try:
        current = await _postgres_revision(url)
    except _Refused as exc:
        raise ConfigError(
            f"database_url: {redact(database_url)} refused the connection: {exc.reason} "
            "(check the user, password and database name)"
        ) from None
    except (OSError, TimeoutError) as exc:
        log.warning("schema not checked: %s unreachable (%r)", redact(database_url), exc)
        return
    known = await asyncio.to_thread(_known_revisions)
    head = known[0]
    if current == head:
        return
    if current is None or current in known:
        raise ConfigError(
            f"database_url: the timeline schema of {redact(database_url)} is at revision "
            f"{current or '(none: never migrated)'}, this engine needs {head}: run "
            "`ivr-engine migrate` (with the same database_url), then start again"
        )
    log.warning(
        "timeline schema of %s is at revision %s, unknown to this engine (head %s): "
        "a newer engine migrated it; starting anyway",
        redact(database_url),
        current,
        head,
    )


class _Refused(Exception):
    """The server answered and refused the role, password or database: not an outage."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _postgres_revision(url: DatabaseUrl) -> str | None:
    import asyncpg  # PostgreSQL only: SQLite users never import it

    try:
        conn = await connect_postgres(url, connect_timeout_s=SCHEMA_CHECK_TIMEOUT_S)
    except (
        asyncpg.InvalidAuthorizationSpecificationError,  # no such role, no pg_hba entry
        asyncpg.InvalidPasswordError,
        asyncpg.InvalidCatalogNameError,  # no such database
    ) as exc:
        raise _Refused(str(exc)) from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise OSError(f"cannot connect: {exc}") from exc
    try:
        if await conn.fetchval("SELECT to_regclass('alembic_version')") is None:
            return None
        revision: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
        return revision
    finally:
        await conn.close(timeout=SCHEMA_CHECK_TIMEOUT_S)


def _known_revisions() -> list[str]:
    """Every revision of the packaged migrations, newest (head) first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [revision.revision for revision in script.walk_revisions()]
