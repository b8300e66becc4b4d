"""The per-call write path against real SQLite and PostgreSQL: same rules as the store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.domain.models import KnownField
from ivr_engine.ports import CustomerWrite, Identity, NewTimelineEvent
from ivr_engine.timeline import FastCallWriter, Timeline, fast_writer, open_timeline
from ivr_engine.timeline.fast_rows import EventRow
from ivr_engine.timeline.urls import parse_database_url

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def event(event_id: str, customer_id: str, intent: str = "billing") -> NewTimelineEvent:
    return NewTimelineEvent(
        event_id, customer_id, NOW, "voice", "call.ivr", intent=intent, data={"n": 1, "é": "ü"}
    )


async def test_batch_is_stored_idempotently_with_newest_fields(
    timeline: Timeline, database_url: str, new_phone: Callable[[], str]
) -> None:
    ada = await timeline.store.create_customer("Ada", [Identity("phone", new_phone())])
    bob = await timeline.store.create_customer("Bob", [Identity("phone", new_phone())])
    old = KnownField("account_number", "111111", "chat", NOW - timedelta(days=1))
    new = KnownField("account_number", "222222", "voice", NOW)
    writer = FastCallWriter(database_url)
    try:
        batch = [
            CustomerWrite(
                ada.customer_id, [event(f"fw:{ada.customer_id}:1", ada.customer_id)], [new]
            ),
            CustomerWrite(bob.customer_id, [event(f"fw:{bob.customer_id}:1", bob.customer_id)], []),
        ]
        assert await writer.write(batch) == set()
        assert await writer.write(batch) == set()  # a replay writes nothing twice
        stale = CustomerWrite(ada.customer_id, [], [old])
        assert await writer.write([stale]) == set()  # older value does not win
    finally:
        await writer.close()
    page = await timeline.store.timeline(ada.customer_id)
    assert [e.event_id for e in page.events] == [f"fw:{ada.customer_id}:1"]
    assert page.events[0].data == {"n": 1, "é": "ü"} and page.events[0].occurred_at == NOW
    stored = await timeline.store.get_customer(ada.customer_id)
    assert stored is not None and stored.known_fields["account_number"].value == "222222"


async def test_merged_customer_goes_to_the_survivor_and_unknown_ids_are_returned(
    timeline: Timeline, database_url: str, new_phone: Callable[[], str]
) -> None:
    source = await timeline.store.create_customer("Old", [Identity("phone", new_phone())])
    target = await timeline.store.create_customer("New", [Identity("phone", new_phone())])
    await timeline.store.merge_customers(source.customer_id, target.customer_id, "same person")
    writer = FastCallWriter(database_url)
    try:
        missing = await writer.write(
            [
                CustomerWrite(
                    source.customer_id, [event(f"fw:{source.customer_id}", source.customer_id)], []
                ),
                CustomerWrite("no-such-customer", [event("fw:nobody", "no-such-customer")], []),
            ]
        )
    finally:
        await writer.close()
    assert missing == {"no-such-customer"}
    page = await timeline.store.timeline(target.customer_id)
    assert f"fw:{source.customer_id}" in [e.event_id for e in page.events]


async def test_one_field_written_twice_in_a_batch_keeps_the_newest(
    timeline: Timeline, database_url: str, new_phone: Callable[[], str]
) -> None:
    """Two calls of one customer, and a merged customer, in one batch: each (survivor, field)
    is written once, with the newest value (PostgreSQL refuses to update a row twice in one
    statement, so the batch must collapse them)."""
    ada = await timeline.store.create_customer("Ada", [Identity("phone", new_phone())])
    old_ada = await timeline.store.create_customer("Ada?", [Identity("phone", new_phone())])
    await timeline.store.merge_customers(old_ada.customer_id, ada.customer_id, "same person")
    earlier = NOW - timedelta(minutes=2)
    writes = [
        CustomerWrite(ada.customer_id, [], [KnownField("account_number", "111", "voice", earlier)]),
        CustomerWrite(old_ada.customer_id, [], [KnownField("account_number", "333", "chat", NOW)]),
        CustomerWrite(ada.customer_id, [], [KnownField("address", "1 Main St", "voice", NOW)]),
    ]
    writer = FastCallWriter(database_url)
    try:
        assert await writer.write(writes) == set()
    finally:
        await writer.close()
    stored = await timeline.store.get_customer(ada.customer_id)
    assert stored is not None
    assert stored.known_fields["account_number"].value == "333"
    assert stored.known_fields["address"].value == "1 Main St"


@pytest.mark.parametrize(
    "url", ["postgresql://postgres@127.0.0.1:1/none", "sqlite:////nonexistent-dir/x.db"]
)
async def test_unreachable_database_is_timeline_unavailable(url: str) -> None:
    writer = FastCallWriter(url, connect_timeout_s=1)
    try:
        with pytest.raises(TimelineUnavailable):
            await writer.write([CustomerWrite("c", [event("e", "c")], [])])
    finally:
        await writer.close()


async def test_sqlite_write_waits_for_another_writer_on_the_worker_not_the_loop(
    sqlite_url: str, new_phone: Callable[[], str]
) -> None:
    """The loop-thread write never waits for a lock: with another process-like connection
    holding the write lock, it is declined at once and the worker thread waits (busy
    timeout) until the lock is released; the loop keeps running meanwhile."""
    timeline = await open_timeline(sqlite_url)
    ada = await timeline.store.create_customer("Ada", [Identity("phone", new_phone())])
    path = parse_database_url(sqlite_url).sqlite_path
    assert path is not None
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    writer = FastCallWriter(sqlite_url)
    try:
        write = asyncio.ensure_future(
            writer.write(
                [CustomerWrite(ada.customer_id, [event("fw:locked", ada.customer_id)], [])]
            )
        )
        ticks = 0
        while ticks < 20:  # the loop is free while the write waits on its worker thread
            await asyncio.sleep(0.005)
            ticks += 1
        assert not write.done()
        holder.execute("COMMIT")
        assert await asyncio.wait_for(write, 5) == set()
        assert writer._inline is not None and writer._inline.declined == 1
    finally:
        holder.close()
        await writer.close()
    page = await timeline.store.timeline(ada.customer_id)
    await timeline.close()
    assert "fw:locked" in [e.event_id for e in page.events]


async def test_sqlite_loop_thread_writes_are_checkpointed_on_the_worker(
    sqlite_url: str, new_phone: Callable[[], str]
) -> None:
    """The loop-thread connection never checkpoints; the writer does it on its worker every
    CHECKPOINT_EVERY commits, so the WAL does not grow without bound."""
    timeline = await open_timeline(sqlite_url)
    ada = await timeline.store.create_customer("Ada", [Identity("phone", new_phone())])
    await timeline.close()  # no other connection checkpoints meanwhile
    wal = parse_database_url(sqlite_url).sqlite_path.with_suffix(".db-wal")  # type: ignore[union-attr]
    writer = FastCallWriter(sqlite_url)
    assert writer._inline is not None
    writer._inline._budget_s = 10.0  # a loaded machine must not send these to the worker
    sizes = []
    try:
        for n in range(3 * fast_writer.CHECKPOINT_EVERY):
            batch = [CustomerWrite(ada.customer_id, [event(f"fw:ck:{n}", ada.customer_id)], [])]
            assert await writer.write(batch) == set()
            await asyncio.sleep(0)
            sizes.append(wal.stat().st_size)
        assert writer._inline is not None and writer._inline.commits == len(sizes)
        assert writer._inline.declined == 0
    finally:
        await writer.close()
    # after a checkpoint the WAL is reused from its start, so its size stops growing
    grown = sizes[fast_writer.CHECKPOINT_EVERY // 2]
    assert max(sizes) < 4 * grown, (grown, max(sizes))


async def test_rows_in_row_form_follow_the_same_rules(
    timeline: Timeline, database_url: str, new_phone: Callable[[], str]
) -> None:
    """``write_rows`` (the call bridge's: data already JSON text): idempotent, merged
    customers to the survivor, unknown customers returned and not written, batch order."""
    source = await timeline.store.create_customer("Old", [Identity("phone", new_phone())])
    target = await timeline.store.create_customer("New", [Identity("phone", new_phone())])
    await timeline.store.merge_customers(source.customer_id, target.customer_id, "same person")
    ada = await timeline.store.create_customer("Ada", [Identity("phone", new_phone())])
    ids = [f"fr:{ada.customer_id}:{n}" for n in range(3)]
    rows = [
        EventRow(ids[0], ada.customer_id, NOW, "voice", "call.started", None, None, '{"n":0}'),
        EventRow(f"fr:{source.customer_id}", source.customer_id, NOW, "voice", "call.x",
                 "billing", None, '{"é":"ü"}'),
        EventRow("fr:nobody", "no-such-customer", NOW, "voice", "call.x", None, None, "{}"),
        EventRow(ids[1], ada.customer_id, NOW, "voice", "call.held", None, "case-1", '{"n":1}'),
    ]  # fmt: skip
    writer = FastCallWriter(database_url)
    try:
        assert await writer.write_rows(rows) == {"no-such-customer"}
        later = [EventRow(ids[2], ada.customer_id, NOW + timedelta(seconds=1), "voice",
                          "call.ended", None, None, '{"n":2}')]  # fmt: skip
        assert await writer.write_rows(rows[:1] + later) == set()  # a replay is skipped
    finally:
        await writer.close()
    page = await timeline.store.timeline(ada.customer_id)
    assert [e.event_id for e in reversed(page.events)] == ids  # in the batch's order
    assert [e.data for e in reversed(page.events)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert page.events[1].case_id == "case-1" and page.events[0].occurred_at > NOW
    moved = await timeline.store.timeline(target.customer_id)
    assert (f"fr:{source.customer_id}", "billing", {"é": "ü"}) in [
        (e.event_id, e.intent, e.data) for e in moved.events
    ]
