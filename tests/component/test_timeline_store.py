"""The timeline against real databases: SQLite (tmp file) and PostgreSQL (real server)."""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ivr_engine.domain.errors import ConfigError, TimelineUnavailable
from ivr_engine.domain.models import KnownField
from ivr_engine.personalize.contacts import CALL_FOLLOW_UP_EVENT_TYPES
from ivr_engine.ports import (
    CallerLookup,
    Identity,
    NewTimelineEvent,
    TimelineStore,
    TimelineWriter,
)
from ivr_engine.timeline import (
    CustomerNotFound,
    FastCallerLookup,
    MergeRejected,
    SqlTimelineStore,
    Timeline,
    open_timeline,
)
from ivr_engine.timeline.fast_lookup import APPLICATION_NAME
from ivr_engine.timeline.migrate import upgrade
from ivr_engine.timeline.schema import metadata
from ivr_engine.timeline.urls import parse_database_url

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
NewPhone = Callable[[], str]


def event(
    event_id: str, customer_id: str, minutes_ago: float, intent: str | None = "billing"
) -> NewTimelineEvent:
    return NewTimelineEvent(
        event_id=event_id,
        customer_id=customer_id,
        occurred_at=NOW - timedelta(minutes=minutes_ago),
        channel="voice",
        event_type="call.ivr",
        intent=intent,
        case_id=None,
        data={"n": minutes_ago},
    )


def field(name: str, value: str, minutes_ago: float, channel: str = "chat") -> KnownField:
    return KnownField(name, value, channel, NOW - timedelta(minutes=minutes_ago))


def test_adapters_implement_the_ports(timeline: Timeline) -> None:
    store: TimelineStore = timeline.store  # checked by mypy, too
    writer: TimelineWriter = timeline.store
    lookup: CallerLookup = timeline.lookup
    assert store is writer and callable(lookup.lookup)


async def test_create_and_lookup_by_phone(timeline: Timeline, new_phone: NewPhone) -> None:
    phone = new_phone()
    customer = await timeline.store.create_customer(
        "Ada", [Identity("phone", phone), Identity("email", f"{phone}@example.com")]
    )
    await timeline.store.append_events([event(f"{phone}:1", customer.customer_id, 5)])

    result = await timeline.lookup.lookup("phone", phone, max_events=50)
    assert not result.ambiguous and result.history is not None
    assert result.history.customer_id == customer.customer_id
    assert result.history.display_name == "Ada"
    assert [e.intent for e in result.history.events] == ["billing"]
    assert result.history.events[0].occurred_at == NOW - timedelta(minutes=5)
    unknown = await timeline.lookup.lookup("phone", new_phone(), max_events=50)
    assert unknown.history is None and not unknown.ambiguous
    assert (await timeline.store.get_customer(customer.customer_id)) == customer
    assert customer.created_at.tzinfo is not None


async def test_ambiguous_until_merged(timeline: Timeline, new_phone: NewPhone) -> None:
    phone = new_phone()
    first = await timeline.store.create_customer("A", [Identity("phone", phone)])
    second = await timeline.store.create_customer("B", [Identity("phone", phone)])
    assert (await timeline.lookup.lookup("phone", phone, max_events=5)).ambiguous
    assert len(await timeline.store.find_customers(Identity("phone", phone))) == 2

    await timeline.store.merge_customers(second.customer_id, first.customer_id, "same person")

    result = await timeline.lookup.lookup("phone", phone, max_events=5)
    assert not result.ambiguous and result.history is not None
    assert result.history.customer_id == first.customer_id
    found = await timeline.store.find_customers(Identity("phone", phone))
    assert [c.customer_id for c in found] == [first.customer_id]


async def test_merge_moves_everything_and_is_audited(
    timeline: Timeline, new_phone: NewPhone
) -> None:
    store = timeline.store
    shared, own = new_phone(), new_phone()
    target = await store.create_customer(
        "Target",
        [Identity("phone", shared)],
        [field("account_number", "old", 60), field("zip", "10001", 1)],
    )
    source = await store.create_customer(
        "Source",
        [Identity("phone", shared), Identity("phone", own)],
        [field("account_number", "new", 10), field("zip", "99999", 30)],
    )
    await store.append_events([event(f"{own}:s{i}", source.customer_id, i) for i in range(3)])
    await store.append_events([event(f"{own}:t", target.customer_id, 100)])

    merged = await store.merge_customers(source.customer_id, target.customer_id, "agent #7")

    assert sorted(i.value for i in merged.identities) == sorted([shared, own])  # deduplicated
    assert merged.known_fields["account_number"].value == "new"  # newer wins
    assert merged.known_fields["zip"].value == "10001"
    gone = await store.get_customer(source.customer_id)
    assert gone is not None and gone.merged_into == target.customer_id
    assert gone.identities == () and gone.known_fields == {}
    page = await store.timeline(target.customer_id, limit=50)
    audit = page.events[0]
    assert (audit.event_type, audit.channel) == ("customer.merged", "system")
    assert audit.data["reason"] == "agent #7"
    assert audit.data["source_customer_id"] == source.customer_id
    assert audit.data["moved_events"] == 3
    assert len(page.events) == 5
    assert (await store.timeline(source.customer_id)).events == ()

    # Writes for the merged-away customer land on the survivor.
    assert await store.append_events([event(f"{own}:late", source.customer_id, 0)]) == 1
    await store.save_known_fields(source.customer_id, [field("pin_hint", "x", 0)])
    again = await store.get_customer(target.customer_id)
    assert again is not None and "pin_hint" in again.known_fields
    with pytest.raises(MergeRejected):
        await store.merge_customers(source.customer_id, target.customer_id, "twice")
    with pytest.raises(MergeRejected):
        await store.merge_customers(target.customer_id, target.customer_id, "self")
    with pytest.raises(CustomerNotFound):
        await store.merge_customers("no-such-customer", target.customer_id, "x")


async def test_append_is_idempotent(timeline: Timeline, new_phone: NewPhone) -> None:
    phone = new_phone()
    customer = await timeline.store.create_customer(None, [Identity("phone", phone)])
    one = event(f"{phone}:1", customer.customer_id, 1)
    assert await timeline.store.append_events([one, one]) == 1
    assert await timeline.store.append_events([one]) == 0
    assert len((await timeline.store.timeline(customer.customer_id)).events) == 1
    with pytest.raises(CustomerNotFound):
        await timeline.store.append_events([event(f"{phone}:x", "no-such-customer", 1)])


async def test_concurrent_appends_store_each_event_once(
    timeline: Timeline, new_phone: NewPhone
) -> None:
    phone = new_phone()
    customer = await timeline.store.create_customer(None, [Identity("phone", phone)])
    events = [event(f"{phone}:{i:03d}", customer.customer_id, i) for i in range(40)]

    async def writer(seed: int) -> int:
        batch = events[:]
        random.Random(seed).shuffle(batch)  # different orders: no deadlocks either
        return await timeline.store.append_events(batch)

    inserted = await asyncio.gather(*(writer(seed) for seed in range(8)))
    assert sum(inserted) == 40
    page = await timeline.store.timeline(customer.customer_id, limit=100)
    assert sorted(e.event_id for e in page.events) == sorted(e.event_id for e in events)


async def test_concurrent_first_time_callers_get_one_customer(
    timeline: Timeline, new_phone: NewPhone
) -> None:
    identity = Identity("phone", new_phone())
    ids = await asyncio.gather(
        *(timeline.store.create_customer_for_identity(identity) for _ in range(6))
    )
    assert len(set(ids)) == 1
    result = await timeline.lookup.lookup("phone", identity.value, max_events=5)
    assert result.history is not None and result.history.customer_id == ids[0]


async def test_lookup_newest_first_capped_with_fields(
    timeline: Timeline, new_phone: NewPhone
) -> None:
    phone = new_phone()
    customer = await timeline.store.create_customer(
        None, [Identity("phone", phone)], [field("account_number", "40012345", 90)]
    )
    minutes = list(range(60))
    random.Random(1).shuffle(minutes)  # insertion order (seq) differs from occurred_at
    await timeline.store.append_events(
        [event(f"{phone}:{m}", customer.customer_id, m) for m in minutes]
    )
    # Same instant twice: the later-recorded one (higher seq) comes first.
    await timeline.store.append_events([event(f"{phone}:tie", customer.customer_id, 0, "moving")])

    result = await timeline.lookup.lookup("phone", phone, max_events=50)
    assert result.history is not None
    history = result.history
    assert len(history.events) == 50
    assert history.events[0].intent == "moving"
    stamps = [e.occurred_at for e in history.events]
    assert stamps == sorted(stamps, reverse=True)
    assert stamps[-1] == NOW - timedelta(minutes=48)
    assert all(s.tzinfo is not None and s.utcoffset() == timedelta(0) for s in stamps)
    known = history.known_fields["account_number"]
    assert (known.value, known.source_channel, known.verified) == ("40012345", "chat", False)
    assert known.updated_at == NOW - timedelta(minutes=90) and known.updated_at.tzinfo
    empty = await timeline.lookup.lookup("phone", phone, max_events=0)
    assert empty.history is not None and empty.history.events == ()


async def test_timestamps_round_trip_as_aware_utc(timeline: Timeline, new_phone: NewPhone) -> None:
    phone = new_phone()
    customer = await timeline.store.create_customer(None, [Identity("phone", phone)])
    plus_two = timezone(timedelta(hours=2))
    at = datetime(2024, 3, 31, 1, 30, 15, 123456, tzinfo=plus_two)  # = 23:30:15.123456Z
    await timeline.store.append_events(
        [NewTimelineEvent(f"{phone}:tz", customer.customer_id, at, "chat", "chat.message")]
    )
    await timeline.store.save_known_fields(
        customer.customer_id, [KnownField("zip", "1", "web", at, verified=True)]
    )
    result = await timeline.lookup.lookup("phone", phone, max_events=5)
    assert result.history is not None
    (looked_up,) = result.history.events
    stored = (await timeline.store.timeline(customer.customer_id)).events[0]
    fetched = await timeline.store.get_customer(customer.customer_id)
    assert fetched is not None
    for value in (
        looked_up.occurred_at,
        stored.occurred_at,
        result.history.known_fields["zip"].updated_at,
        fetched.known_fields["zip"].updated_at,
    ):
        assert value == at and value.utcoffset() == timedelta(0)
        assert (value.hour, value.microsecond) == (23, 123456)
    assert result.history.known_fields["zip"].verified is True
    assert stored.recorded_at.tzinfo is not None


async def test_waiting_lookups_are_served_in_arrival_order(
    database_url: str, new_phone: NewPhone
) -> None:
    lookup = FastCallerLookup(database_url, pool_size=1)
    done: list[int] = []

    async def one(i: int) -> None:
        await lookup.lookup("phone", new_phone(), max_events=5)
        done.append(i)

    try:
        await asyncio.gather(*(one(i) for i in range(30)))
    finally:
        await lookup.close()
    assert done == list(range(30))


async def test_lookup_window_holds_contacts_not_a_calls_follow_ups(
    timeline: Timeline, new_phone: NewPhone
) -> None:
    """Each bridged call leaves 7-10 events (call.transferred ... call.ended, the tracker's
    call.agent_*): the lookup leaves them out, so its window of ``max_events`` still reaches
    the caller's earlier contacts (and a case's other events: outbound, closed)."""
    phone = new_phone()
    customer = await timeline.store.create_customer(None, [Identity("phone", phone)])
    cid = customer.customer_id
    older = [event(f"{phone}:call{n}", cid, 600 + n, "tech_support") for n in range(3)]
    closed = replace(event(f"{phone}:closed", cid, 500, None), event_type="case.closed")
    follow_ups = [
        replace(event(f"{phone}:f{n}", cid, n), event_type=kind)
        for n, kind in enumerate(sorted(CALL_FOLLOW_UP_EVENT_TYPES) * 6)
    ]
    await timeline.store.append_events([*older, closed, *follow_ups])
    result = await timeline.lookup.lookup("phone", phone, max_events=50)
    assert result.history is not None
    assert [e.event_type for e in result.history.events] == ["case.closed"] + ["call.ivr"] * 3


async def test_recent_events_are_the_history_the_lookup_reads(
    timeline: Timeline, new_phone: NewPhone
) -> None:
    """The menu preview, the screen pop and the last-agent affinity read "recent history"
    through the store: the same events, in the same order, as the per-call lookup."""
    phone = new_phone()
    customer = await timeline.store.create_customer(None, [Identity("phone", phone)])
    cid = customer.customer_id
    minutes = list(range(60))
    random.Random(2).shuffle(minutes)  # insertion order (seq) differs from occurred_at
    await timeline.store.append_events([event(f"{phone}:{m}", cid, m) for m in minutes])
    await timeline.store.append_events([event(f"{phone}:tie", cid, 0, "moving")])

    recent = await timeline.store.recent_events(cid, limit=50)
    looked_up = await timeline.lookup.lookup("phone", phone, max_events=50)
    assert looked_up.history is not None
    assert [(e.occurred_at, e.intent) for e in recent] == [
        (e.occurred_at, e.intent) for e in looked_up.history.events
    ]
    assert [e.event_id for e in recent[:3]] == [f"{phone}:tie", f"{phone}:0", f"{phone}:1"]
    with pytest.raises(CustomerNotFound):
        await timeline.store.recent_events("no-such-customer")
    with pytest.raises(ValueError, match="at least 1"):
        await timeline.store.recent_events(cid, limit=0)


async def test_paging_is_stable(timeline: Timeline, new_phone: NewPhone) -> None:
    phone = new_phone()
    customer = await timeline.store.create_customer(None, [Identity("phone", phone)])
    cid = customer.customer_id
    await timeline.store.append_events([event(f"{phone}:{i:02d}", cid, i) for i in range(25)])
    seen: list[str] = []
    page = await timeline.store.timeline(cid, limit=10)
    while True:
        seen.extend(e.event_id for e in page.events)
        seqs = [e.seq for e in page.events]
        assert seqs == sorted(seqs, reverse=True)
        # New events arriving between pages do not shift the pages being read.
        await timeline.store.append_events([event(f"{phone}:new{len(seen)}", cid, -1)])
        if page.next_before is None:
            break
        page = await timeline.store.timeline(cid, limit=10, before_seq=page.next_before)
    assert seen == [f"{phone}:{i:02d}" for i in range(24, -1, -1)]
    with pytest.raises(CustomerNotFound):
        await timeline.store.timeline("no-such-customer")


async def test_known_fields_newer_wins(timeline: Timeline, new_phone: NewPhone) -> None:
    store = timeline.store
    customer = await store.create_customer(None, [Identity("phone", new_phone())])
    cid = customer.customer_id
    await store.save_known_fields(cid, [field("account_number", "A", 10, "voice")])
    await store.save_known_fields(cid, [field("account_number", "stale", 20, "web")])
    await store.save_known_fields(cid, [field("zip", "1", 5), field("zip", "2", 1)])
    got = await store.get_customer(cid)
    assert got is not None
    assert got.known_fields["account_number"].value == "A"
    assert got.known_fields["account_number"].source_channel == "voice"
    assert got.known_fields["zip"].value == "2"
    await store.save_known_fields(cid, [field("account_number", "B", 0, "chat")])
    got = await store.get_customer(cid)
    assert got is not None and got.known_fields["account_number"].value == "B"
    with pytest.raises(CustomerNotFound):
        await store.save_known_fields("no-such-customer", [field("x", "y", 0)])


async def test_customer_admin_operations(timeline: Timeline, new_phone: NewPhone) -> None:
    store = timeline.store
    phone, email = new_phone(), f"{new_phone()}@example.com"
    customer = await store.create_customer("Old", [Identity("phone", phone)])
    renamed = await store.update_customer(customer.customer_id, "New")
    assert renamed.display_name == "New" and renamed.updated_at >= customer.updated_at
    added = await store.add_identity(customer.customer_id, Identity("email", email))
    again = await store.add_identity(customer.customer_id, Identity("email", email))
    assert (
        added.identities
        == again.identities
        == (
            Identity("phone", phone),
            Identity("email", email),
        )
    )
    assert await store.get_customer("no-such-customer") is None
    with pytest.raises(CustomerNotFound):
        await store.update_customer("no-such-customer", "x")
    with pytest.raises(CustomerNotFound):
        await store.add_identity("no-such-customer", Identity("phone", phone))


# ------------------------------------------------------------------ failures and recovery


@pytest.mark.postgres
async def test_postgres_lookup_recovers_after_backends_are_killed(
    pg_url: str, new_phone: NewPhone
) -> None:
    timeline = await open_timeline(pg_url)
    try:
        phone = new_phone()
        await timeline.store.create_customer("Ada", [Identity("phone", phone)])
        await asyncio.gather(
            *(timeline.lookup.lookup("phone", phone, max_events=5) for _ in range(20))
        )
        killed = await _terminate_lookup_backends(pg_url)
        assert 1 <= killed <= 4  # the FIFO gate caps the connections at pool_size
        result = await timeline.lookup.lookup("phone", phone, max_events=5)
        assert result.history is not None and result.history.display_name == "Ada"
        # Writes recover too (pre-ping on checkout).
        await _terminate_lookup_backends(pg_url, "ivr-engine-store")
        assert len(await timeline.store.find_customers(Identity("phone", phone))) == 1
    finally:
        await timeline.close()


async def _terminate_lookup_backends(url: str, application: str = APPLICATION_NAME) -> int:
    conn = await asyncpg.connect(url)
    try:
        killed: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = $1",
            application,
        )
        return killed
    finally:
        await conn.close()


async def test_sqlite_lookup_recovers_after_the_file_was_unusable(
    sqlite_url: str, tmp_path: Path, new_phone: NewPhone
) -> None:
    path = Path(parse_database_url(sqlite_url).sqlite_path or "")
    timeline = await open_timeline(sqlite_url)
    try:
        phone = new_phone()
        await timeline.store.create_customer("Ada", [Identity("phone", phone)])
        await timeline.store.close()
        good = tmp_path / "good.db"
        await asyncio.to_thread(shutil.copyfile, path, good)

        broken = FastCallerLookup(sqlite_url)
        await asyncio.to_thread(path.write_bytes, b"this is not a database" * 100)
        for _ in range(2):
            with pytest.raises(TimelineUnavailable):
                await broken.lookup("phone", phone, max_events=5)
        await asyncio.to_thread(path.unlink)
        with pytest.raises(TimelineUnavailable):  # gone: not silently re-created empty
            await broken.lookup("phone", phone, max_events=5)
        await asyncio.to_thread(shutil.copyfile, good, path)  # the database is back
        result = await broken.lookup("phone", phone, max_events=5)
        assert result.history is not None and result.history.display_name == "Ada"
        await broken.close()
    finally:
        await timeline.close()


@pytest.mark.postgres
async def test_unreachable_postgres_raises_timeline_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    timeline = await open_timeline(f"postgresql://postgres@127.0.0.1:{port}/nowhere")
    try:
        with pytest.raises(TimelineUnavailable):
            await timeline.lookup.lookup("phone", "+15550000000", max_events=5)
        with pytest.raises(TimelineUnavailable):
            await timeline.store.find_customers(Identity("phone", "+15550000000"))
        with pytest.raises(TimelineUnavailable):
            await timeline.store.append_events([event("x", "y", 0)])
    finally:
        await timeline.close()


async def test_unusable_sqlite_path_raises_timeline_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    url = f"sqlite:///{blocker}/sub/timeline.db"  # cannot be created, even by root
    with pytest.raises(TimelineUnavailable):
        await open_timeline(url)
    lookup = FastCallerLookup(url)
    with pytest.raises(TimelineUnavailable):
        await lookup.lookup("phone", "+15550000000", max_events=5)
    await lookup.close()
    store = SqlTimelineStore(url)
    with pytest.raises(TimelineUnavailable):
        await store.get_customer("x")
    await store.close()


async def test_cancelled_lookup_leaves_the_pool_usable(
    timeline: Timeline, new_phone: NewPhone
) -> None:
    phone = new_phone()
    await timeline.store.create_customer("Ada", [Identity("phone", phone)])
    for _ in range(5):
        task = asyncio.ensure_future(timeline.lookup.lookup("phone", phone, max_events=5))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    result = await timeline.lookup.lookup("phone", phone, max_events=5)
    assert result.history is not None


# ------------------------------------------------------------------ urls and migrations


@pytest.mark.parametrize(
    ("url", "dialect"),
    [
        ("sqlite:///data/x.db", "sqlite"),
        ("sqlite:////var/lib/x.db", "sqlite"),
        ("postgresql://u:p%40ss@db:5433/ivr", "postgresql"),
        ("postgres://u@db/ivr", "postgresql"),
        ("postgresql+asyncpg://u@db/ivr", "postgresql"),
    ],
)
def test_database_urls(url: str, dialect: str) -> None:
    parsed = parse_database_url(url)
    assert parsed.dialect == dialect
    driver = "sqlite+aiosqlite" if dialect == "sqlite" else "postgresql+asyncpg"
    assert parsed.async_url.drivername == driver
    if dialect == "sqlite":
        assert parsed.sqlite_path is not None and parsed.sqlite_path.is_absolute()
    else:
        assert parsed.postgres_dsn is not None and parsed.postgres_dsn.startswith("postgresql://")
    if "p%40ss" in url:
        assert parsed.async_url.password == "p@ss" and "p%40ss" in (parsed.postgres_dsn or "")


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "sqlite:///:memory:", "sqlite://", "nonsense", "postgresql://h"]
)
def test_unsupported_urls_say_what_to_use(url: str) -> None:
    with pytest.raises(ConfigError, match=r"sqlite:///|postgresql://"):
        parse_database_url(url)


async def _dump_schema(url: str) -> tuple[list[Any], list[Any]]:
    """(alembic diffs vs schema.py, normalised catalog incl. index definitions)."""
    engine = create_async_engine(parse_database_url(url).async_url_string)

    def inspect_all(conn: Connection) -> tuple[list[Any], list[Any]]:
        diffs = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
        if conn.dialect.name == "sqlite":
            catalog = conn.execute(
                text(
                    "SELECT type, name, sql FROM sqlite_master WHERE tbl_name != 'alembic_version'"
                )
            )
        else:
            catalog = conn.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes "
                    "WHERE schemaname = 'public' AND tablename != 'alembic_version' "
                    "UNION ALL SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE connamespace = 'public'::regnamespace "
                    "AND conrelid::regclass::text <> 'alembic_version'"
                )
            )
        rows = sorted(" ".join(" ".join(str(v).split()) for v in row) for row in catalog)
        insp = inspect(conn)
        columns = [(t, [str(c) for c in insp.get_columns(t)]) for t in insp.get_table_names()]
        return diffs, rows + sorted(str(c) for c in columns if c[0] != "alembic_version")

    try:
        async with engine.connect() as conn:
            return await conn.run_sync(inspect_all)
    finally:
        await engine.dispose()


async def _created_by_metadata(url: str) -> None:
    engine = create_async_engine(parse_database_url(url).async_url_string)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("pg", marks=pytest.mark.postgres)])
async def test_migrations_produce_exactly_the_schema(
    dialect: str, tmp_path: Path, new_pg_database: Callable[[], Coroutine[Any, Any, str]]
) -> None:
    if dialect == "sqlite":
        migrated, reference = f"sqlite:///{tmp_path}/m/a.db", f"sqlite:///{tmp_path}/b.db"
    else:
        migrated, reference = await new_pg_database(), await new_pg_database()
    await upgrade(migrated)
    await upgrade(migrated)  # idempotent
    await _created_by_metadata(reference)
    diffs, migrated_catalog = await _dump_schema(migrated)
    assert diffs == []
    _, reference_catalog = await _dump_schema(reference)
    assert migrated_catalog == reference_catalog
    assert any("occurred_at DESC, seq DESC" in row for row in migrated_catalog)
    assert any("WHERE" in row and "case_id IS NOT NULL" in row for row in migrated_catalog)


async def test_lookup_given_up_by_its_caller_leaves_the_pool_usable(
    timeline: Timeline, new_phone: Callable[[], str]
) -> None:
    """The caller's deadline cancels the wait, not the query: the connection is reused."""
    phone = new_phone()
    await timeline.store.create_customer("Ada", [Identity("phone", phone)])
    if timeline.lookup._inline is not None:
        # SQLite answers on the loop within its 2 ms budget, before any deadline can fire;
        # a deadline can only cut the worker path, which a slow or locked read takes.
        timeline.lookup._inline._paused_until = float("inf")
    await timeline.lookup.lookup("phone", phone, max_events=50)  # one pooled connection
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await timeline.lookup.lookup("phone", phone, max_events=50)
    result = await timeline.lookup.lookup("phone", phone, max_events=50)
    assert result.history is not None and result.history.display_name == "Ada"
    assert not timeline.lookup._queue.servers  # nothing left behind


async def test_warm_up_opens_a_connection_before_the_first_call(database_url: str) -> None:
    opened = await open_timeline(database_url, migrate=False)
    try:
        assert await opened.lookup.warm_up() is True
        assert len(opened.lookup._queue.idle) == 1  # the first call will not have to connect
    finally:
        await opened.close()
    down = await open_timeline("postgresql://postgres@127.0.0.1:1/none", migrate=False)
    try:
        assert await down.lookup.warm_up() is False  # reported, not raised
    finally:
        await down.close()


async def test_sqlite_lookup_inline_and_on_the_worker_agree(
    sqlite_url: str, new_phone: NewPhone
) -> None:
    """The loop-thread path (tried first on SQLite) and the aiosqlite worker path return the
    same history; when the inline path declines, the worker answers."""
    timeline = await open_timeline(sqlite_url)
    inline = FastCallerLookup(sqlite_url)
    assert inline._inline is not None
    inline._inline._budget_s = 10.0  # a loaded machine must not send these to the worker
    worker = FastCallerLookup(sqlite_url, inline=False)
    try:
        phone = new_phone()
        customer = await timeline.store.create_customer(
            "Ada", [Identity("phone", phone)], [field("account_number", "40012345", 90)]
        )
        await timeline.store.append_events(
            [event(f"{phone}:{m}", customer.customer_id, m) for m in (5, 1, 30, 2)]
        )
        by_inline = await inline.lookup("phone", phone, max_events=3)
        by_worker = await worker.lookup("phone", phone, max_events=3)
        assert by_inline == by_worker and by_inline.history is not None
        assert [e.occurred_at for e in by_inline.history.events] == [
            NOW - timedelta(minutes=m) for m in (1, 2, 5)
        ]
        assert inline._inline.declined == 0
        inline._inline._paused_until = float("inf")  # as after a slow or locked read
        assert await inline.lookup("phone", phone, max_events=3) == by_worker
        assert inline._inline.declined == 1
        assert (await inline.lookup("phone", "+15550000000", max_events=3)).history is None
    finally:
        await inline.close()
        await worker.close()
        await timeline.close()
