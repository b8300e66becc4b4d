"""``open_call_path(url)``: only what one call needs, for the classic per-call AGI script.

The caller lookup and the call writer on the raw drivers (aiosqlite / asyncpg / sqlite3),
without the SQLAlchemy store or Alembic: a process per call pays every import on every
call (bench/results.md, "classic AGI start-up"). The writer also resolves first-time
callers (``phone_owners`` / ``create_customers``, the store's rules), so the recorder needs
no store. No migration: run ``ivr-engine migrate`` once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr_engine.timeline.fast_lookup import FastCallerLookup
from ivr_engine.timeline.fast_writer import FastCallWriter
from ivr_engine.timeline.urls import parse_database_url


@dataclass(frozen=True, slots=True)
class CallPath:
    lookup: FastCallerLookup  # a ``CallerLookup``
    writer: FastCallWriter  # the recorder's writer and customer directory

    async def close(self) -> None:
        try:
            await self.lookup.close()
        finally:
            await self.writer.close()


def open_call_path(database_url: str, *, pool_size: int = 1) -> CallPath:
    """Nothing connects until first use; ``UnsupportedDatabaseUrl`` for a bad URL."""
    parse_database_url(database_url)
    return CallPath(
        lookup=FastCallerLookup(database_url, pool_size=pool_size),
        writer=FastCallWriter(database_url),
    )
