"""``ivr-engine identities renormalize``: phone identities stored under the earlier
international-prefix rule, re-read (``phone_rereading``) and, with ``apply``, corrected.

Reads the phone identities in batches by id (keyset, one short statement each); the
re-reading (phonenumbers, CPU) runs in a worker thread, not on the event loop. Applying
writes one transaction per batch, and re-checks each correction inside it: a value that
another customer gained since the scan is a conflict then too; a row changed or deleted
since is skipped. On PostgreSQL the corrected value is locked as creating a customer for it
locks it (``store._owner_or_new``), so a concurrent first call cannot slip in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ivr_engine.domain.errors import ConfigError
from ivr_engine.identity_repair import (
    Ambiguous,
    Change,
    Conflict,
    Correction,
    PhoneRow,
    Plan,
    plan_changes,
    scan_rows,
)
from ivr_engine.timeline.engine import Engines, create_engines
from ivr_engine.timeline.migrate import check_schema_current
from ivr_engine.timeline.schema import identities
from ivr_engine.timeline.urls import parse_database_url, redact

PHONE = "phone"
DEFAULT_BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class Renormalized:
    plan: Plan
    ambiguous: tuple[Ambiguous, ...]
    applied: bool
    skipped: tuple[Change, ...] = ()  # changed or deleted since the scan


async def renormalize_phones(
    database_url: str, region: str, *, apply: bool, batch_size: int = DEFAULT_BATCH_SIZE
) -> Renormalized:
    """Plan (and with ``apply`` make) the corrections; see the module docstring."""
    planned = await plan_renormalization(database_url, region, batch_size)
    return await apply_plan(database_url, planned, batch_size) if apply else planned


async def plan_renormalization(
    database_url: str, region: str, batch_size: int = DEFAULT_BATCH_SIZE
) -> Renormalized:
    """What would change (a dry run: nothing is written)."""
    async with _engines(database_url) as db:
        corrections: list[Correction] = []
        ambiguous: list[Ambiguous] = []
        async for rows in _phone_rows(db, batch_size):
            scan = await asyncio.to_thread(scan_rows, rows, region)
            corrections.extend(scan.corrections)
            ambiguous.extend(scan.ambiguous)
        owners = await _owners(db, sorted({c.corrected for c in corrections}), batch_size)
    return Renormalized(plan_changes(corrections, owners), tuple(ambiguous), applied=False)


async def apply_plan(
    database_url: str, planned: Renormalized, batch_size: int = DEFAULT_BATCH_SIZE
) -> Renormalized:
    """Make the planned changes, each re-checked in its write transaction."""
    done: list[Change] = []
    late: list[Conflict] = []
    skipped: list[Change] = []
    changes = planned.plan.changes
    async with _engines(database_url) as db:
        for start in range(0, len(changes), batch_size):
            async with db.writing() as conn:
                for change in changes[start : start + batch_size]:
                    outcome = await _apply_one(conn, db.dialect, change)
                    if isinstance(outcome, Conflict):
                        late.append(outcome)
                    elif outcome is None:
                        skipped.append(change)
                    else:
                        done.append(outcome)
    final = Plan(tuple(done), planned.plan.conflicts + tuple(late))
    return Renormalized(final, planned.ambiguous, applied=True, skipped=tuple(skipped))


@asynccontextmanager
async def _engines(database_url: str) -> AsyncIterator[Engines]:
    """The store's engines, on a database that has the schema (never created here)."""
    url = parse_database_url(database_url)
    if url.sqlite_path is not None and not await asyncio.to_thread(url.sqlite_path.exists):
        raise ConfigError(f"database_url: {redact(database_url)}: no such SQLite file")
    await check_schema_current(database_url)
    db = create_engines(url, database_url, pool_size=1)
    try:
        yield db
    finally:
        await db.dispose()


async def _phone_rows(db: Engines, batch_size: int) -> AsyncIterator[list[PhoneRow]]:
    after = 0
    while True:
        query = (
            select(identities.c.id, identities.c.customer_id, identities.c.value)
            .where(identities.c.kind == PHONE, identities.c.id > after)
            .order_by(identities.c.id)
            .limit(batch_size)
        )
        async with db.reading() as conn:
            rows = [PhoneRow(r.id, r.customer_id, r.value) for r in await conn.execute(query)]
        if not rows:
            return
        yield rows
        after = rows[-1].row_id


async def _owners(db: Engines, values: Sequence[str], batch_size: int) -> dict[str, set[str]]:
    owners: dict[str, set[str]] = {}
    for start in range(0, len(values), batch_size):
        async with db.reading() as conn:
            found = await _owners_in(conn, values[start : start + batch_size])
        for value, customers in found.items():
            owners.setdefault(value, set()).update(customers)
    return owners


async def _owners_in(conn: AsyncConnection, values: Sequence[str]) -> dict[str, set[str]]:
    query = select(identities.c.value, identities.c.customer_id).where(
        identities.c.kind == PHONE, identities.c.value.in_(values)
    )
    owners: dict[str, set[str]] = {}
    for row in await conn.execute(query):
        owners.setdefault(row.value, set()).add(row.customer_id)
    return owners


async def _apply_one(
    conn: AsyncConnection, dialect: str, change: Change
) -> Change | Conflict | None:
    """The change made, a conflict (another customer holds the value now), or None (the
    row was changed or deleted since the scan)."""
    row = change.row
    if dialect == "postgresql":  # the lock store._owner_or_new takes for this identity
        key = f"{PHONE}\x1f{change.corrected}"
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})
    holders = (await _owners_in(conn, [change.corrected])).get(change.corrected, set())
    if others := tuple(sorted(holders - {row.customer_id})):
        return Conflict(row, change.corrected, others)
    this_row = (identities.c.id == row.row_id) & (identities.c.value == row.value)
    made = replace(change, drop=row.customer_id in holders)
    if made.drop:
        result = await conn.execute(delete(identities).where(this_row))
    else:
        result = await conn.execute(
            update(identities).where(this_row).values(value=change.corrected)
        )
    return made if result.rowcount else None
