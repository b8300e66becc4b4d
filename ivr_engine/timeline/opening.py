"""``open_timeline(url)``: the whole timeline, for the FastAGI engine, the API and the bridge.

The per-call ``lookup`` and ``writer`` (raw drivers, see ``call_path.py``) and the ``store``
(SQLAlchemy Core) for everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr_engine.timeline.fast_lookup import FastCallerLookup
from ivr_engine.timeline.fast_writer import FastCallWriter
from ivr_engine.timeline.migrate import check_schema_current, upgrade
from ivr_engine.timeline.store import SqlTimelineStore
from ivr_engine.timeline.urls import parse_database_url


@dataclass(frozen=True, slots=True)
class Timeline:
    lookup: FastCallerLookup  # a ``CallerLookup``
    store: SqlTimelineStore  # a ``TimelineStore`` (and ``TimelineWriter``)
    writer: FastCallWriter  # the per-call write path (raw driver, one transaction a batch)

    async def close(self) -> None:
        try:
            await self.lookup.close()
            await self.writer.close()
        finally:
            await self.store.close()


async def open_timeline(
    database_url: str, *, pool_size: int = 4, migrate: bool | None = None
) -> Timeline:
    """Open the timeline; nothing connects until first use (except migrations).

    ``migrate``: ``None`` (default) migrates SQLite (zero set-up: creates the file and its
    directory) but not PostgreSQL, where production runs ``ivr-engine migrate`` explicitly;
    a reachable PostgreSQL whose schema is behind this code is refused (``ConfigError``).
    Raises ``UnsupportedDatabaseUrl`` for a bad URL, ``TimelineUnavailable`` when the
    migration cannot reach or write the database.
    """
    url = parse_database_url(database_url)
    if migrate if migrate is not None else url.dialect == "sqlite":
        await upgrade(database_url)
    else:
        await check_schema_current(database_url)
    return Timeline(
        lookup=FastCallerLookup(database_url, pool_size=pool_size),
        store=SqlTimelineStore(database_url, pool_size=pool_size),
        writer=FastCallWriter(database_url),
    )
