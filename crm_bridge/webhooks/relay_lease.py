"""The relay's row in the timeline database (``webhook_relay``): a lease and the cursor.

One relay per ``name`` delivers at a time, on SQLite and PostgreSQL alike: the holder of
an unexpired lease (``owner``, ``lease_until_ms``). ``claim`` takes the lease when it is
free, expired or already ours; ``save`` stores the cursor *and* renews the lease only
``WHERE owner = us`` (fencing: a relay that lost its lease, e.g. paused past its expiry,
cannot move the cursor); ``release`` frees it at a clean stop, so a standby takes over at
once. A process that dies keeps it until ``lease_until_ms``, then a standby takes over.
Lease times are the relays' own clocks: hosts must be NTP-synchronised (skew much less
than the lease, 10 s by default).

The row is created once, with ``high_seq`` = the newest event then: a new relay delivers
what is committed from then on, not the whole history. ``WebhookRelay.start`` creates it
before it returns (``ensure_row``), so "from then on" is a point its caller can rely on:
everything it writes afterwards is delivered, even if the first claim comes later.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from crm_bridge.webhooks.relay_cursor import RelayCursor
from ivr_engine.timeline.engine import Engines, create_engines
from ivr_engine.timeline.schema import timeline_events, webhook_relay
from ivr_engine.timeline.sql import dialect_insert
from ivr_engine.timeline.urls import parse_database_url

__all__ = ["RelayLease"]


class RelayLease:
    def __init__(self, database_url: str, name: str, owner: str) -> None:
        url = parse_database_url(database_url)
        self._db: Engines = create_engines(url, database_url, 1)
        self.name, self.owner = name, owner

    async def ensure_row(self) -> None:
        """Create the relay's row (the starting point: the newest event now) if missing."""
        async with self._db.writing() as conn:
            await self._ensure_row(conn)

    async def _ensure_row(self, conn: AsyncConnection) -> None:
        row = webhook_relay.c
        if (await conn.execute(select(row.name).where(row.name == self.name))).first() is None:
            newest = select(func.coalesce(func.max(timeline_events.c.seq), 0))
            high = (await conn.execute(newest)).scalar_one()
            first = dialect_insert(self._db.dialect, webhook_relay).values(
                name=self.name, owner=None, lease_until_ms=0, high_seq=high, gaps=[]
            )
            await conn.execute(first.on_conflict_do_nothing(index_elements=["name"]))

    async def claim(self, now_ms: int, lease_ms: int) -> RelayCursor | None:
        """The lease (until ``now_ms + lease_ms``) and the stored cursor; ``None``: another
        relay holds it."""
        row = webhook_relay.c
        take = (
            update(webhook_relay)
            .where(row.name == self.name)
            .where((row.owner == self.owner) | row.owner.is_(None) | (row.lease_until_ms < now_ms))
            .values(owner=self.owner, lease_until_ms=now_ms + lease_ms)
            .returning(row.high_seq, row.gaps)
        )
        async with self._db.writing() as conn:
            await self._ensure_row(conn)
            got = (await conn.execute(take)).first()
        return None if got is None else RelayCursor.from_row(got[0], got[1])

    async def save(self, cursor: RelayCursor, now_ms: int, lease_ms: int) -> bool:
        """Store the cursor and renew the lease; ``False``: the lease is no longer ours."""
        statement = (
            update(webhook_relay)
            .where(webhook_relay.c.name == self.name, webhook_relay.c.owner == self.owner)
            .values(
                high_seq=cursor.high,
                gaps=cursor.to_json(),
                lease_until_ms=now_ms + lease_ms,
            )
        )
        async with self._db.writing() as conn:
            result = await conn.execute(statement)
        return result.rowcount == 1

    async def release(self) -> None:
        statement = (
            update(webhook_relay)
            .where(webhook_relay.c.name == self.name, webhook_relay.c.owner == self.owner)
            .values(owner=None, lease_until_ms=0)
        )
        async with self._db.writing() as conn:
            await conn.execute(statement)

    async def close(self) -> None:
        await self._db.dispose()
