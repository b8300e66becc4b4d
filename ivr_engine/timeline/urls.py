"""User-facing database URLs → SQLAlchemy async URLs and raw-driver parameters.

Accepted (what users configure):

* ``sqlite:///relative/file.db``, ``sqlite:////absolute/file.db`` (embedded default)
* ``postgresql://user:password@host:port/db`` (``postgres://`` is an alias)

The async forms ``sqlite+aiosqlite://`` and ``postgresql+asyncpg://`` are accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ivr_engine.timeline.errors import UnsupportedDatabaseUrl

Dialect = Literal["sqlite", "postgresql"]

_HINT = "use sqlite:///PATH/TO/FILE.db or postgresql://USER@HOST:PORT/DB"
_SQLITE = {"sqlite", "sqlite+aiosqlite"}
_POSTGRES = {"postgresql", "postgres", "postgresql+asyncpg"}


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """One parsed database URL; ``sqlite_path`` or ``postgres_dsn`` is set, per dialect."""

    dialect: Dialect
    async_url: URL  # for create_async_engine (sqlite+aiosqlite / postgresql+asyncpg)
    sqlite_path: Path | None = None  # for aiosqlite.connect
    postgres_dsn: str | None = None  # for asyncpg.connect(dsn)

    @property
    def async_url_string(self) -> str:
        """The async URL as text, password included (never log this)."""
        return self.async_url.render_as_string(hide_password=False)


def redact(database_url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        if "@" in database_url and "://" in database_url:
            scheme, rest = database_url.split("://", 1)
            return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
        return database_url


def parse_database_url(database_url: str) -> DatabaseUrl:
    """Parse and check a configured URL; ``UnsupportedDatabaseUrl`` says what to use."""
    try:
        url = make_url(database_url)
    except ArgumentError as exc:
        raise UnsupportedDatabaseUrl(
            f"database_url: cannot parse {redact(database_url)!r}: {_HINT}"
        ) from exc
    scheme = url.drivername
    if scheme in _SQLITE:
        return _sqlite(url, database_url)
    if scheme in _POSTGRES:
        return _postgres(url)
    raise UnsupportedDatabaseUrl(
        f"database_url: unsupported scheme {scheme!r} in {redact(database_url)!r}: {_HINT}"
    )


def _sqlite(url: URL, raw: str) -> DatabaseUrl:
    database = url.database or ""
    if url.host or url.username or url.port:
        raise UnsupportedDatabaseUrl(
            f"database_url: {raw!r}: a SQLite URL has no host; use three slashes, "
            "sqlite:///relative.db, or four for an absolute path, sqlite:////var/lib/x.db"
        )
    if database in ("", ":memory:") or database.startswith("file:") or url.query:
        raise UnsupportedDatabaseUrl(
            f"database_url: {raw!r}: SQLite needs a file path (in-memory databases and "
            f"URI options are not supported): {_HINT}"
        )
    path = Path(database).expanduser().absolute()
    async_url = URL.create("sqlite+aiosqlite", database=str(path))
    return DatabaseUrl("sqlite", async_url, sqlite_path=path)


def _postgres(url: URL) -> DatabaseUrl:
    if not url.database:
        raise UnsupportedDatabaseUrl(
            f"database_url: {url.render_as_string()!r}: name the database: "
            "postgresql://USER@HOST:PORT/DB"
        )
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return DatabaseUrl("postgresql", url.set(drivername="postgresql+asyncpg"), postgres_dsn=dsn)
