"""The shared agent roster in the timeline database (tables ``agent_roster`` and
``agent_roster_meta``): the only SQL of agent management.

Every write runs in one transaction that first bumps ``agent_roster_meta.version``: that
row lock (PostgreSQL) or ``BEGIN IMMEDIATE`` (SQLite) serialises roster writers, and the
new version tells every engine process, polling it, that the roster changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, delete, insert, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ivr_engine.contact_center.agent_record import AgentRecord
from ivr_engine.domain.errors import ConfigError, IvrEngineError
from ivr_engine.timeline.engine import Engines, create_engines
from ivr_engine.timeline.schema import agent_roster, agent_roster_meta
from ivr_engine.timeline.urls import parse_database_url

_META_ID = 1


class AgentExists(IvrEngineError):
    def __init__(self, agent_id: str) -> None:
        super().__init__(f"agent {agent_id!r} already exists")
        self.agent_id = agent_id


class AgentMissing(IvrEngineError):
    def __init__(self, agent_id: str) -> None:
        super().__init__(f"agent {agent_id!r} not found")
        self.agent_id = agent_id


class TokenTaken(IvrEngineError):
    def __init__(self, agent_id: str) -> None:
        super().__init__(f"agent {agent_id!r} already uses this API token digest")
        self.agent_id = agent_id


@dataclass(frozen=True, slots=True)
class RosterSnapshot:
    version: int
    records: tuple[AgentRecord, ...]  # sorted by agent_id


class SqlRosterStore:
    def __init__(self, database_url: str, *, pool_size: int = 2) -> None:
        self._db: Engines = create_engines(
            parse_database_url(database_url), database_url, pool_size
        )

    async def check_schema(self) -> None:
        """``ConfigError`` when the roster tables are missing (an unmigrated database)."""
        async with self._db.reading() as conn:
            present = await conn.run_sync(lambda c: inspect(c).has_table("agent_roster_meta"))
        if not present:
            raise ConfigError(
                f"{self._db.where}: no agent roster table: run `ivr-engine migrate` first"
            )

    async def version(self) -> int:
        async with self._db.reading() as conn:
            found = await conn.scalar(
                select(agent_roster_meta.c.version).where(agent_roster_meta.c.id == _META_ID)
            )
        return int(found or 0)

    async def load(self) -> RosterSnapshot:
        """The version first, then the rows: a write in between only costs one more reload."""
        async with self._db.reading() as conn:
            found = await conn.scalar(
                select(agent_roster_meta.c.version).where(agent_roster_meta.c.id == _META_ID)
            )
            rows = await conn.execute(select(agent_roster).order_by(agent_roster.c.agent_id))
            records = tuple(_record(row) for row in rows)
        return RosterSnapshot(int(found or 0), records)

    async def get(self, agent_id: str) -> AgentRecord | None:
        async with self._db.reading() as conn:
            rows = await conn.execute(
                select(agent_roster).where(agent_roster.c.agent_id == agent_id)
            )
            row = rows.first()
        return None if row is None else _record(row)

    async def create(self, record: AgentRecord) -> None:
        async with self._db.writing() as conn:
            await self._bump(conn)
            if await _exists(conn, record.agent_id):
                raise AgentExists(record.agent_id)
            await _check_token_free(conn, record)
            await conn.execute(insert(agent_roster).values(**_values(record)))

    async def update(
        self, agent_id: str, change: Callable[[AgentRecord], AgentRecord]
    ) -> AgentRecord:
        """Read, ``change`` and write one agent under the roster lock (no lost update).

        ``AgentMissing``; whatever ``change`` raises rolls the transaction back."""
        async with self._db.writing() as conn:
            await self._bump(conn)
            rows = await conn.execute(
                select(agent_roster).where(agent_roster.c.agent_id == agent_id)
            )
            row = rows.first()
            if row is None:
                raise AgentMissing(agent_id)
            record = change(_record(row))
            await _check_token_free(conn, record)
            await conn.execute(
                update(agent_roster)
                .where(agent_roster.c.agent_id == agent_id)
                .values(**_values(record))
            )
        return record

    async def delete(self, agent_id: str) -> None:
        async with self._db.writing() as conn:
            await self._bump(conn)
            done = await conn.execute(
                delete(agent_roster).where(agent_roster.c.agent_id == agent_id)
            )
            if done.rowcount == 0:
                raise AgentMissing(agent_id)

    async def upsert(self, records: Iterable[AgentRecord]) -> int:
        """Create or replace each record (the CSV import); one transaction, one version."""
        count = 0
        async with self._db.writing() as conn:
            await self._bump(conn)
            for record in records:
                await conn.execute(
                    delete(agent_roster).where(agent_roster.c.agent_id == record.agent_id)
                )
                await _check_token_free(conn, record)
                await conn.execute(insert(agent_roster).values(**_values(record)))
                count += 1
        return count

    async def seed_once(self, records: Iterable[AgentRecord]) -> bool:
        """Insert the agents file's records the first time only (agents already stored win).

        True if this call seeded the roster; False if it had been seeded before."""
        async with self._db.writing() as conn:
            await self._ensure_meta(conn)
            won = await conn.execute(
                update(agent_roster_meta)
                .where(agent_roster_meta.c.id == _META_ID, agent_roster_meta.c.seeded.is_(False))
                .values(seeded=True, version=agent_roster_meta.c.version + 1)
            )
            if won.rowcount == 0:
                return False
            for record in records:
                if not await _exists(conn, record.agent_id):
                    await conn.execute(insert(agent_roster).values(**_values(record)))
        return True

    async def _bump(self, conn: AsyncConnection) -> None:
        await self._ensure_meta(conn)
        await conn.execute(
            update(agent_roster_meta)
            .where(agent_roster_meta.c.id == _META_ID)
            .values(version=agent_roster_meta.c.version + 1)
        )

    async def _ensure_meta(self, conn: AsyncConnection) -> None:
        dialect = postgresql if self._db.dialect == "postgresql" else sqlite
        await conn.execute(
            dialect.insert(agent_roster_meta)
            .values(id=_META_ID, version=0, seeded=False)
            .on_conflict_do_nothing(index_elements=["id"])
        )

    async def aclose(self) -> None:
        await self._db.dispose()


async def _exists(conn: AsyncConnection, agent_id: str) -> bool:
    found = await conn.scalar(
        select(agent_roster.c.agent_id).where(agent_roster.c.agent_id == agent_id)
    )
    return found is not None


async def _check_token_free(conn: AsyncConnection, record: AgentRecord) -> None:
    if record.token_sha256 is None:
        return
    owner = await conn.scalar(
        select(agent_roster.c.agent_id).where(
            agent_roster.c.token_sha256 == record.token_sha256,
            agent_roster.c.agent_id != record.agent_id,
        )
    )
    if owner is not None:
        raise TokenTaken(str(owner))


def _values(record: AgentRecord) -> Mapping[str, Any]:
    return {
        "agent_id": record.agent_id,
        **record.profile(),
        "password_hash": record.password_hash,
        "token_sha256": record.token_sha256,
        "updated_at": datetime.now(UTC),
    }


def _record(row: Row[Any]) -> AgentRecord:
    return AgentRecord(
        agent_id=row.agent_id,
        name=row.name,
        sip_endpoint=row.sip_endpoint,
        skills={str(k): int(v) for k, v in dict(row.skills or {}).items()},
        languages=tuple(str(x) for x in (row.languages or [])),
        team=row.team,
        max_concurrent=row.max_concurrent,
        password_hash=row.password_hash,
        token_sha256=row.token_sha256,
    )
