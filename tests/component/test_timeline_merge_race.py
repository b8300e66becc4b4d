"""Writes racing a merge on PostgreSQL land on the survivor (``sql.survivors`` locks).

The merge is held open at its most dangerous point on a second real connection: the
customer rows locked as ``merge_customers`` locks them, the events, identities and fields
already moved, ``merged_into`` set but not committed. A writer started then must wait and
write to the survivor; before the fix it wrote to the merged-away customer at once (the
rows it wrote were never moved: "acknowledged but stranded").
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from ivr_engine.domain.models import KnownField
from ivr_engine.ports import CustomerWrite, Identity, NewTimelineEvent
from ivr_engine.timeline import open_timeline
from ivr_engine.timeline.fast_writer import FastCallWriter
from ivr_engine.timeline.store import SqlTimelineStore

pytestmark = pytest.mark.postgres
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)

Write = Callable[[SqlTimelineStore, str, str], Awaitable[Any]]


@dataclass(frozen=True)
class Race:
    """The store and call writer under test, and a second connection to hold a merge open."""

    store: SqlTimelineStore
    writer: FastCallWriter
    merger: asyncpg.Connection


@pytest_asyncio.fixture
async def race(pg_url: str) -> AsyncIterator[Race]:
    timeline = await open_timeline(pg_url, migrate=False)
    merger = await asyncpg.connect(pg_url)
    writer = FastCallWriter(pg_url)
    try:
        assert isinstance(timeline.store, SqlTimelineStore)
        yield Race(timeline.store, writer, merger)
    finally:
        await writer.close()
        await merger.close()
        await timeline.close()


async def _append(store: SqlTimelineStore, customer_id: str, tag: str) -> Any:
    event = NewTimelineEvent(tag, customer_id, NOW, "web", "x", None, None, {})
    return await store.append_events([event])


async def _field(store: SqlTimelineStore, customer_id: str, tag: str) -> Any:
    return await store.save_known_fields(customer_id, [KnownField(tag, "v", "web", NOW)])


async def _identity(store: SqlTimelineStore, customer_id: str, tag: str) -> Any:
    return await store.add_identity(customer_id, Identity("email", f"{tag}@example.com"))


async def _held_merge(conn: asyncpg.Connection, source: str, target: str) -> None:
    """The merge's statements up to (not including) its commit, on ``conn``."""
    await conn.execute("BEGIN")
    await conn.fetch(
        "SELECT id FROM customers WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
        sorted([source, target]),
    )
    for table in ("timeline_events", "identities", "known_fields"):
        await conn.execute(
            f"UPDATE {table} SET customer_id = $2 WHERE customer_id = $1", source, target
        )
    await conn.execute("UPDATE customers SET merged_into = $2 WHERE id = $1", source, target)


@pytest.mark.parametrize("write", [_append, _field, _identity], ids=["event", "field", "identity"])
async def test_a_write_racing_a_merge_lands_on_the_survivor(race: Race, write: Write) -> None:
    store = race.store
    source = (await store.create_customer("source", [])).customer_id
    target = (await store.create_customer("target", [])).customer_id
    tag = f"race-{source[:8]}"

    await _held_merge(race.merger, source, target)
    writing = asyncio.create_task(write(store, source, tag))
    await asyncio.sleep(0.5)
    assert not writing.done(), "the write did not wait for the merge in progress"
    await race.merger.execute("COMMIT")
    await asyncio.wait_for(writing, 10)

    survivor = await store.get_customer(target)
    gone = await store.get_customer(source)
    assert survivor is not None and gone is not None
    assert gone.merged_into == target
    assert (gone.identities, dict(gone.known_fields)) == ((), {})
    assert (await store.timeline(source)).events == ()
    on_target = [e.event_id for e in (await store.timeline(target)).events]
    landed = (
        tag in on_target
        or tag in survivor.known_fields
        or Identity("email", f"{tag}@example.com") in survivor.identities
    )
    assert landed


async def test_a_write_for_a_merged_customer_waits_for_a_merge_of_its_survivor(
    race: Race,
) -> None:
    store = race.store
    first, second, third = [(await store.create_customer(n, [])).customer_id for n in "abc"]
    await store.merge_customers(first, second, "earlier")
    await _held_merge(race.merger, second, third)
    await race.merger.execute(
        "UPDATE customers SET merged_into = $2 WHERE merged_into = $1", second, third
    )
    writing = asyncio.create_task(_append(store, first, f"chain-{first[:8]}"))
    await asyncio.sleep(0.5)
    assert not writing.done()
    await race.merger.execute("COMMIT")
    assert await asyncio.wait_for(writing, 10) == 1
    on_third = [e.event_id for e in (await store.timeline(third)).events]
    assert f"chain-{first[:8]}" in on_third


async def test_a_call_written_by_the_fast_writer_racing_a_merge_lands_on_the_survivor(
    race: Race,
) -> None:
    """The call path's one-statement batch (``PG_BATCH``) waits for the merge too."""
    store = race.store
    source = (await store.create_customer("source", [])).customer_id
    target = (await store.create_customer("target", [])).customer_id
    tag = f"voice:race-{source[:8]}:ivr"
    event = NewTimelineEvent(tag, source, NOW, "voice", "call.ivr", "billing", None, {})
    field = KnownField(f"f-{source[:8]}", "v", "voice", NOW)

    await _held_merge(race.merger, source, target)
    writes = [CustomerWrite(source, (event,), (field,))]
    writing = asyncio.create_task(race.writer.write(writes))
    await asyncio.sleep(0.5)
    assert not writing.done(), "the call write did not wait for the merge in progress"
    await race.merger.execute("COMMIT")
    assert await asyncio.wait_for(writing, 10) == set()

    assert (await store.timeline(source)).events == ()
    assert tag in [e.event_id for e in (await store.timeline(target)).events]
    survivor = await store.get_customer(target)
    assert survivor is not None and survivor.known_fields[field.name].value == "v"


async def _customers(conn: asyncpg.Connection, ids: list[str]) -> None:
    for customer_id in ids:
        await conn.execute(
            "INSERT INTO customers (id, display_name, created_at, updated_at)"
            " VALUES ($1, NULL, now(), now())",
            customer_id,
        )


@pytest.mark.parametrize("path", ["store", "call"])
async def test_a_write_through_a_merged_customer_and_a_merge_do_not_deadlock(
    race: Race, path: str
) -> None:
    """Customers b < m < n, m merged into b. A write for {m, n} and the merge n → b: the
    writer used to lock m and n, then b (the survivor, or the events' foreign-key check)
    while the merge held b and waited for n: PostgreSQL killed one of them (deadlock)."""
    store, holder = race.store, race.merger
    prefix = uuid.uuid4().hex[:8]
    b, m, n = f"{prefix}-b", f"{prefix}-m", f"{prefix}-n"
    await _customers(holder, [b, m, n])
    await store.merge_customers(m, b, "earlier")
    await holder.execute("BEGIN")  # holds n: orders the writer's and the merge's steps
    await holder.fetch("SELECT id FROM customers WHERE id = $1 FOR UPDATE", n)
    events = [
        NewTimelineEvent(f"voice:{prefix}-{c}:ivr", c, NOW, "voice", "x", None, None, {})
        for c in (m, n)
    ]
    if path == "store":
        writing = asyncio.create_task(store.append_events(events))
    else:
        writes = [CustomerWrite(e.customer_id, (e,), ()) for e in events]
        writing = asyncio.create_task(race.writer.write(writes))
    await asyncio.sleep(0.3)
    merging = asyncio.create_task(store.merge_customers(n, b, "second"))
    await asyncio.sleep(0.3)
    await holder.execute("COMMIT")
    written, merged = await asyncio.wait_for(
        asyncio.gather(writing, merging, return_exceptions=True), 20
    )
    assert not isinstance(written, BaseException), written
    assert not isinstance(merged, BaseException), merged
    on_b = {e.event_id for e in (await store.timeline(b)).events}
    assert {e.event_id for e in events} <= on_b


async def test_a_call_for_a_customer_whose_survivor_is_merging_lands_on_the_last_survivor(
    race: Race,
) -> None:
    """x merged into y; y → z merging while the call is written: the call lands on z (the
    call path followed one hop: it landed on y, merged away)."""
    store = race.store
    prefix = uuid.uuid4().hex[:8]
    x, y, z = f"{prefix}-x", f"{prefix}-y", f"{prefix}-z"
    await _customers(race.merger, [x, y, z])
    await store.merge_customers(x, y, "earlier")
    await _held_merge(race.merger, y, z)
    await race.merger.execute("UPDATE customers SET merged_into = $2 WHERE merged_into = $1", y, z)
    tag = f"voice:{prefix}:ivr"
    event = NewTimelineEvent(tag, x, NOW, "voice", "call.ivr", None, None, {})
    writing = asyncio.create_task(race.writer.write([CustomerWrite(x, (event,), ())]))
    await asyncio.sleep(0.5)
    assert not writing.done()
    await race.merger.execute("COMMIT")
    assert await asyncio.wait_for(writing, 10) == set()
    assert tag in [e.event_id for e in (await store.timeline(z)).events]
