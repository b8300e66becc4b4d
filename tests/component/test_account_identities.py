"""A saved account number identifies its customer (SQLite and PostgreSQL, real databases).

Every way a known field is saved gives the customer the ``("account", value)`` identity of
their ``account_number`` (the store's writes, the raw call writer), unless another customer
owns it: the field is kept, the identity is not taken from its owner, and a warning says
why. Revision 0007 backfills the identity for customers saved before, where unambiguous.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from ivr_engine.domain.models import KnownField
from ivr_engine.ports import CustomerWrite, Identity, NewTimelineEvent, TimelineStore
from ivr_engine.timeline import (
    FastCallWriter,
    Timeline,
    account_identities,
    fast_sql,
    open_timeline,
)
from ivr_engine.timeline.migrate import upgrade
from ivr_engine.timeline.urls import parse_database_url

NOW = datetime.now(UTC).replace(microsecond=0)
NewPhone = Callable[[], str]
_accounts = itertools.count(uuid.uuid4().int % 50_000_000 + 60_000_000)


def new_account() -> str:
    return str(next(_accounts))


def account(value: str, minutes_ago: float = 0, channel: str = "chat") -> KnownField:
    return KnownField("account_number", value, channel, NOW - timedelta(minutes=minutes_ago))


async def owners(store: TimelineStore, value: str) -> list[str]:
    return [c.customer_id for c in await store.find_customers(Identity("account", value))]


async def customer(timeline: Timeline, phone: str) -> str:
    made = await timeline.store.create_customer("Ada", [Identity("phone", phone)])
    return made.customer_id


async def test_every_store_write_of_an_account_number_adds_the_identity(
    timeline: Timeline, new_phone: NewPhone
) -> None:
    store = timeline.store
    numbers = [new_account() for _ in range(5)]
    created = await store.create_customer(None, [], [account(numbers[0])])
    ada = await customer(timeline, new_phone())
    await store.save_known_fields(ada, [account(numbers[1])])
    bob = await customer(timeline, new_phone())
    await store.put_known_field(bob, account(numbers[2]))
    cid = await customer(timeline, new_phone())
    event = NewTimelineEvent(f"acct:{cid}", cid, NOW, "chat", "message.inbound")
    assert await store.append_event_with_fields(event, [account(numbers[3])])
    phone = new_phone()
    made = await store.append_event_for_identity(
        Identity("phone", phone),
        lambda c: NewTimelineEvent(f"acct:{phone}", c, NOW, "chat", "message.inbound"),
        [account(numbers[4])],
    )
    assert made is not None
    expected = [created.customer_id, ada, bob, cid, made[0]]
    for number, customer_id in zip(numbers, expected, strict=True):
        assert await owners(store, number) == [customer_id], number
    found = await timeline.lookup.lookup("account", numbers[1], max_events=5)
    assert found.history is not None and found.history.customer_id == ada


async def test_an_account_number_another_customer_owns_stays_a_field_only(
    timeline: Timeline, new_phone: NewPhone, caplog: pytest.LogCaptureFixture
) -> None:
    store = timeline.store
    number = new_account()
    ada = await customer(timeline, new_phone())
    await store.save_known_fields(ada, [account(number)])
    bob = await customer(timeline, new_phone())
    with caplog.at_level(logging.WARNING):
        await store.put_known_field(bob, account(number, channel="web"))
    stored = await store.get_customer(bob)
    assert stored is not None and stored.known_fields["account_number"].value == number
    assert await owners(store, number) == [ada]  # not taken, not shared
    assert f"customer(s) {ada} own that account identity" in caplog.text


async def test_a_value_that_is_no_account_number_adds_no_identity(
    timeline: Timeline, new_phone: NewPhone
) -> None:
    ada = await customer(timeline, new_phone())
    await timeline.store.save_known_fields(ada, [account("12-34")])
    stored = await timeline.store.get_customer(ada)
    assert stored is not None and [i.kind for i in stored.identities] == ["phone"]


async def test_an_older_account_number_that_is_not_saved_claims_nothing(
    timeline: Timeline, new_phone: NewPhone
) -> None:
    """The identity follows the field as stored: a stale write that loses claims nothing."""
    ada = await customer(timeline, new_phone())
    current, stale = new_account(), new_account()
    await timeline.store.save_known_fields(ada, [account(current)])
    await timeline.store.save_known_fields(ada, [account(stale, minutes_ago=60)])
    assert await owners(timeline.store, current) == [ada]
    assert await owners(timeline.store, stale) == []


async def test_concurrent_saves_of_one_number_give_it_to_one_customer(
    timeline: Timeline, new_phone: NewPhone
) -> None:
    number = new_account()
    ids = [await customer(timeline, new_phone()) for _ in range(6)]
    await asyncio.gather(*(timeline.store.save_known_fields(c, [account(number)]) for c in ids))
    assert len(await owners(timeline.store, number)) == 1


async def test_the_call_writer_adds_the_identity_unless_another_owns_it(
    timeline: Timeline, database_url: str, new_phone: NewPhone
) -> None:
    ada = await customer(timeline, new_phone())
    bob = await customer(timeline, new_phone())
    cy = await customer(timeline, new_phone())
    mine, taken = new_account(), new_account()
    await timeline.store.save_known_fields(cy, [account(taken)])
    writer = FastCallWriter(database_url)
    try:
        batch = [
            CustomerWrite(ada, [], [account(mine, channel="voice")]),
            CustomerWrite(bob, [], [account(taken, channel="voice")]),
        ]
        assert await writer.write(batch) == set()
        assert await writer.write(batch) == set()  # a replay: nothing new
    finally:
        await writer.close()
    assert await owners(timeline.store, mine) == [ada]
    assert await owners(timeline.store, taken) == [cy]
    stored = await timeline.store.get_customer(bob)
    assert stored is not None and stored.known_fields["account_number"].value == taken


async def test_the_call_writer_gives_a_merged_customers_number_to_the_survivor(
    timeline: Timeline, database_url: str, new_phone: NewPhone
) -> None:
    old = await customer(timeline, new_phone())
    survivor = await customer(timeline, new_phone())
    await timeline.store.merge_customers(old, survivor, "same person")
    number = new_account()
    writer = FastCallWriter(database_url)
    try:
        assert await writer.write([CustomerWrite(old, [], [account(number)])]) == set()
    finally:
        await writer.close()
    assert await owners(timeline.store, number) == [survivor]


async def test_the_call_writer_gives_one_new_number_saved_twice_in_a_batch_to_one(
    timeline: Timeline, database_url: str, new_phone: NewPhone
) -> None:
    ada = await customer(timeline, new_phone())
    bob = await customer(timeline, new_phone())
    number = new_account()
    writer = FastCallWriter(database_url)
    try:
        batch = [CustomerWrite(c, [], [account(number)]) for c in (ada, bob)]
        assert await writer.write(batch) == set()
    finally:
        await writer.close()
    assert await owners(timeline.store, number) == [min(ada, bob)]


# ---------------------------------------------------------------------------- backfill


async def _execute(url: str, statements: list[tuple[str, dict[str, Any]]]) -> None:
    engine = create_async_engine(parse_database_url(url).async_url_string)
    try:
        async with engine.begin() as conn:
            for statement, params in statements:
                await conn.execute(text(statement), params)
    finally:
        await engine.dispose()


def _customer_rows(customer_id: str, merged_into: str | None = None) -> tuple[str, dict[str, Any]]:
    return (
        "INSERT INTO customers (id, display_name, created_at, updated_at, merged_into) "
        "VALUES (:id, NULL, :at, :at, :m)",
        {"id": customer_id, "at": NOW, "m": merged_into},
    )


def _field_row(customer_id: str, value: str) -> tuple[str, dict[str, Any]]:
    return (
        "INSERT INTO known_fields (customer_id, name, value, source_channel, updated_at, "
        "verified) VALUES (:c, 'account_number', :v, 'chat', :at, false)",
        {"c": customer_id, "v": value, "at": NOW},
    )


def _identity_row(customer_id: str, value: str) -> tuple[str, dict[str, Any]]:
    return (
        "INSERT INTO identities (customer_id, kind, value) VALUES (:c, 'account', :v)",
        {"c": customer_id, "v": value},
    )


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("pg", marks=pytest.mark.postgres)])
async def test_migration_backfills_unambiguous_account_identities(
    dialect: str, tmp_path: Path, new_pg_database: Callable[[], Coroutine[Any, Any, str]]
) -> None:
    url = f"sqlite:///{tmp_path}/t.db" if dialect == "sqlite" else await new_pg_database()
    await upgrade(url, "0006")
    await _execute(
        url,
        [
            *(_customer_rows(c) for c in ("a", "b1", "b2", "c", "d", "e", "f", "t")),
            _customer_rows("m", merged_into="t"),
            _field_row("a", "111111"),  # only holder: backfilled
            _field_row("b1", "222222"),  # two holders: ambiguous, left
            _field_row("b2", "222222"),
            _field_row("c", "333333"),  # owned by another as an identity: left
            _identity_row("d", "333333"),
            _field_row("e", "44-44"),  # no account number
            _field_row("f", "555555"),  # owns it already: unchanged
            _identity_row("f", "555555"),
            _field_row("m", "666666"),  # a merged customer's leftover: not backfilled
        ],
    )
    await upgrade(url)
    timeline = await open_timeline(url, migrate=False)
    try:
        store = timeline.store
        assert await owners(store, "111111") == ["a"]
        assert await owners(store, "222222") == []
        assert await owners(store, "333333") == ["d"]
        assert await owners(store, "44-44") == []
        assert await owners(store, "555555") == ["f"]
        assert await owners(store, "666666") == []
    finally:
        await timeline.close()
    if dialect == "pg":  # statistics refreshed: stale ones made the writer scan every account
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            analyzed = await conn.fetchval(
                "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'identities'"
            )
        finally:
            await conn.close()
        assert analyzed is not None


@pytest.mark.postgres
async def test_both_drivers_lock_each_number_on_the_stores_identity_key(pg_url: str) -> None:
    """One template (``identity_locks``) rendered for SQLAlchemy and for asyncpg: while
    either holds its lock, the store's key for ``("account", number)`` is taken."""
    numbers = [new_account(), new_account()]
    keys = [f"account\x1f{n}" for n in numbers]  # store._owner_or_new's key
    dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    engine = create_async_engine(parse_database_url(pg_url).async_url_string)
    raw, other = await asyncpg.connect(dsn), await asyncpg.connect(dsn)

    async def free() -> list[bool]:  # a try-lock outside a transaction is released at once
        probe = "SELECT pg_try_advisory_xact_lock(hashtext($1))"
        return [await other.fetchval(probe, key) for key in keys]

    try:
        async with engine.begin() as conn:
            params = {"accounts": numbers, "kind": "account"}
            await conn.execute(text(account_identities.PG_LOCK_ACCOUNTS), params)
            assert await free() == [False, False]
        assert await free() == [True, True]
        async with raw.transaction():
            await raw.execute(fast_sql.PG_LOCK_ACCOUNTS, numbers, "account")
            assert await free() == [False, False]
        assert await free() == [True, True]
    finally:
        await raw.close()
        await other.close()
        await engine.dispose()
