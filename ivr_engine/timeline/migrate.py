"""Programmatic Alembic: ``await upgrade(url)`` creates or upgrades the timeline schema.

No ``alembic.ini`` is needed. Alembic is synchronous (it loads scripts from disk), so it
runs in a worker thread with its own event loop; the caller's loop never blocks.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.exc import SQLAlchemyError

from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.timeline.urls import DatabaseUrl, parse_database_url, redact

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_lock = threading.Lock()  # Alembic's ``context`` proxy is process-global


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic ``Config`` for the packaged migrations (``database_url`` optional)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``; SQLite: creates the file and its directory.

    Raises ``UnsupportedDatabaseUrl`` for a bad URL and ``TimelineUnavailable`` when the
    database cannot be reached or written.
    """
    url = parse_database_url(database_url)
    try:
        await asyncio.to_thread(_upgrade_blocking, url, database_url, revision)
    except (SQLAlchemyError, OSError, sqlite3.Error) as exc:
        raise TimelineUnavailable(
            f"cannot migrate {redact(database_url)}: {type(exc).__name__}: {exc}"
        ) from exc


def _upgrade_blocking(url: DatabaseUrl, database_url: str, revision: str) -> None:
    if url.sqlite_path is not None:
        url.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        _enable_wal(url.sqlite_path)
    with _lock:
        command.upgrade(alembic_config(database_url), revision)


def _enable_wal(path: Path) -> None:
    """WAL is persistent in the file: readers (the per-call lookup) never wait on writers."""
    connection = sqlite3.connect(path, timeout=5.0)
    try:
        connection.execute("PRAGMA journal_mode=WAL").fetchone()
    finally:
        connection.close()
