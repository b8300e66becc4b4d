"""The per-call lookup's queue against the real PostgreSQL: lookups waiting for a connection
are answered together by one statement, each exactly as it would be alone; FIFO order,
callers who gave up, failing connections and closing still behave as for single lookups.

Statements are counted by wrapping the driver's ``fetch`` (one call: one statement on one
connection); a test that needs a statement held "in flight" holds the wrapper open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.domain.models import KnownField
from ivr_engine.ports import Identity, LookupResult, NewTimelineEvent
from ivr_engine.timeline import FastCallerLookup, Timeline, open_timeline
from ivr_engine.timeline.fast_lookup import (
    PG_BATCH_LOOKUP_SQL,
    PG_LOOKUP_SQL,
    PG_SESSION_SETTINGS,
)
from ivr_engine.timeline.lookup_queue import Pending, Row

pytestmark = pytest.mark.postgres

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
NewPhone = Callable[[], str]


class Statements:
    """Wraps a lookup's driver ``fetch``: the batch sizes it was called with, in order;
    ``hold`` keeps the next statement from being sent until released."""

    def __init__(self, lookup: FastCallerLookup) -> None:
        self.sizes: list[int] = []
        self.connections: list[Any] = []
        self._real = lookup._driver.fetch
        self._hold: asyncio.Event | None = None
        self.holding = asyncio.Event()  # set once the held statement is waiting
        lookup._driver.fetch = self._fetch  # type: ignore[method-assign]

    def hold(self) -> asyncio.Event:
        self._hold = asyncio.Event()
        return self._hold

    async def _fetch(self, conn: Any, batch: Sequence[Pending]) -> list[Row]:
        self.sizes.append(len(batch))
        self.connections.append(conn)
        if self._hold is not None:
            release, self._hold = self._hold, None
            self.holding.set()
            await release.wait()
        return await self._real(conn, batch)


@pytest.fixture
async def timeline(pg_url: str) -> AsyncIterator[Timeline]:
    opened = await open_timeline(pg_url, migrate=False)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def lookup(pg_url: str) -> AsyncIterator[FastCallerLookup]:
    opened = FastCallerLookup(pg_url, pool_size=1)
    try:
        yield opened
    finally:
        await opened.close()


async def _callers(timeline: Timeline, new_phone: NewPhone) -> dict[str, str]:
    """Phones of every kind of caller, by name: customers with events and fields, one with
    no events, a number shared by two customers, a merged-away customer's number, a
    customer's second number given as stored, and numbers nobody has."""
    store = timeline.store
    phones = {name: new_phone() for name in ("ada", "bob", "cy", "shared", "merged", "nobody")}
    ada = await store.create_customer(
        "Ada",
        [Identity("phone", phones["ada"])],
        [KnownField("account_number", "40012345", "chat", NOW - timedelta(days=3), True)],
    )
    bob = await store.create_customer(None, [Identity("phone", phones["bob"])])
    await store.create_customer("Cy", [Identity("phone", phones["cy"])])
    for customer, minutes, intents in (
        (ada.customer_id, range(1, 40), ("billing", "tech_support", None)),
        (bob.customer_id, range(5, 8), ("moving",)),
    ):
        await store.append_events(
            [
                NewTimelineEvent(
                    event_id=f"{customer}:{m}",
                    customer_id=customer,
                    occurred_at=NOW - timedelta(minutes=m * 7 % 60, seconds=m),
                    channel="voice" if m % 2 else "chat",
                    event_type="case.opened" if m % 5 == 0 else "call.ivr",
                    intent=intents[m % len(intents)],
                    case_id=f"CASE-{m}" if m % 5 == 0 else None,
                    data={},
                )
                for m in minutes
            ]
        )
    first = await store.create_customer("First", [Identity("phone", phones["shared"])])
    await store.create_customer("Second", [Identity("phone", phones["shared"])])
    gone = await store.create_customer("Gone", [Identity("phone", phones["merged"])])
    await store.merge_customers(gone.customer_id, first.customer_id, "same person")
    await store.add_identity(bob.customer_id, Identity("phone", phones["cy"] + "9"))
    phones["bob-second"] = phones["cy"] + "9"
    phones["nobody-2"] = new_phone()
    return phones


async def _alone(url: str, calls: Sequence[tuple[str, int]]) -> list[LookupResult]:
    """Each lookup on its own, one after the other (the single-phone statement)."""
    lone = FastCallerLookup(url, pool_size=1, batch_cap=1)
    try:
        return [await lone.lookup("phone", phone, max_events=n) for phone, n in calls]
    finally:
        await lone.close()


async def test_a_burst_is_answered_by_one_statement_each_as_alone(
    pg_url: str, timeline: Timeline, lookup: FastCallerLookup, new_phone: NewPhone
) -> None:
    phones = await _callers(timeline, new_phone)
    calls = [(phone, 5 + i % 3 * 10) for i, phone in enumerate(phones.values())] * 2
    statements = Statements(lookup)

    together = await asyncio.gather(*(lookup.lookup("phone", p, max_events=n) for p, n in calls))

    assert statements.sizes == [len(calls)]  # all of them, one statement
    assert list(together) == await _alone(pg_url, calls)
    by_name = dict(zip(phones, together, strict=False))
    ada = by_name["ada"].history
    assert ada is not None and ada.display_name == "Ada" and len(ada.events) == 5
    assert [e.occurred_at for e in ada.events] == sorted(
        (e.occurred_at for e in ada.events), reverse=True
    )
    assert ada.known_fields["account_number"].verified is True
    assert by_name["shared"].ambiguous and by_name["shared"].history is None
    merged = by_name["merged"].history  # the number moved to the survivor
    assert merged is not None and merged.display_name == "First"
    bob, bob_second = by_name["bob"].history, by_name["bob-second"].history
    assert bob is not None and bob_second is not None
    assert bob_second.customer_id == bob.customer_id and len(bob.events) == 3
    cy = by_name["cy"].history
    assert cy is not None and cy.events == () and cy.known_fields == {}
    assert by_name["nobody"] == LookupResult(history=None, ambiguous=False)


async def test_the_batch_statement_returns_the_single_statement_rows(
    pg_url: str, timeline: Timeline, new_phone: NewPhone
) -> None:
    """Raw rows, before decoding: same counts, ids, JSON text (events' order included)."""
    phones = list((await _callers(timeline, new_phone)).values())
    limits = [3, 50, 0, 1, 20, 7, 2, 9]
    conn = await asyncpg.connect(pg_url, server_settings=PG_SESSION_SETTINGS)
    try:
        alone = [
            await conn.fetchrow(PG_LOOKUP_SQL, "phone", p, n)
            for p, n in zip(phones, limits, strict=True)
        ]
        batch = await conn.fetch(PG_BATCH_LOOKUP_SQL, ["phone"] * len(phones), phones, limits)
    finally:
        await conn.close()
    assert [row[0] for row in batch] == list(range(1, len(phones) + 1))
    assert [tuple(row)[1:] for row in batch] == [tuple(row) for row in alone]


async def test_batches_are_capped_and_served_first_come_first_served(pg_url: str) -> None:
    lookup = FastCallerLookup(pg_url, pool_size=1, batch_cap=4)
    statements = Statements(lookup)
    done: list[int] = []

    async def one(i: int) -> None:
        await lookup.lookup("phone", f"+1999000{i:04d}", max_events=5)
        done.append(i)

    try:
        await asyncio.gather(*(one(i) for i in range(10)))
    finally:
        await lookup.close()
    assert statements.sizes == [4, 4, 2]
    assert done == list(range(10))


async def test_a_lookup_finding_a_free_connection_goes_out_alone_at_once(
    lookup: FastCallerLookup,
) -> None:
    statements = Statements(lookup)
    held = statements.hold()
    first = asyncio.ensure_future(lookup.lookup("phone", "+19990000001", max_events=5))
    await asyncio.wait_for(statements.holding.wait(), 5)  # sent without waiting for more
    assert statements.sizes == [1]
    queued = [
        asyncio.ensure_future(lookup.lookup("phone", f"+1999000{i:04d}", max_events=5))
        for i in range(2, 6)
    ]
    await asyncio.sleep(0.01)
    held.set()
    await asyncio.gather(first, *queued)
    assert statements.sizes == [1, 4]  # the ones that queued meanwhile: one statement


async def test_a_caller_who_gave_up_before_its_batch_started_is_skipped(
    lookup: FastCallerLookup, timeline: Timeline, new_phone: NewPhone
) -> None:
    phone = new_phone()
    await timeline.store.create_customer("Ada", [Identity("phone", phone)])
    statements = Statements(lookup)
    held = statements.hold()
    first = asyncio.ensure_future(lookup.lookup("phone", phone, max_events=5))
    await asyncio.wait_for(statements.holding.wait(), 5)
    queued = [asyncio.ensure_future(lookup.lookup("phone", phone, max_events=5)) for _ in range(4)]
    await asyncio.sleep(0)
    queued[1].cancel()  # its decision deadline: gone before its batch was taken
    held.set()
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    for result in (results[0], results[1], results[3], results[4]):
        assert isinstance(result, LookupResult) and result.history is not None
    assert statements.sizes == [1, 3]  # the one who gave up was not looked up
    assert not lookup._queue.servers


async def test_a_caller_who_gave_up_mid_statement_leaves_the_others_and_the_pool(
    lookup: FastCallerLookup, timeline: Timeline, new_phone: NewPhone
) -> None:
    phone = new_phone()
    await timeline.store.create_customer("Ada", [Identity("phone", phone)])
    await lookup.lookup("phone", phone, max_events=5)  # one pooled connection
    statements = Statements(lookup)
    held = statements.hold()
    callers = [asyncio.ensure_future(lookup.lookup("phone", phone, max_events=5)) for _ in range(3)]
    await asyncio.wait_for(statements.holding.wait(), 5)
    assert statements.sizes == [3]  # all three in the statement now in flight
    callers[0].cancel()
    held.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, LookupResult) and r.history for r in results[1:])
    assert not lookup._queue.servers
    pooled = lookup._queue.idle
    assert len(pooled) == 1 and pooled[0] is statements.connections[0]  # not thrown away
    assert (await lookup.lookup("phone", phone, max_events=5)).history is not None


async def test_a_batch_on_a_stale_connection_is_retried_once_on_a_fresh_one(
    pg_url: str, lookup: FastCallerLookup, timeline: Timeline, new_phone: NewPhone
) -> None:
    phone = new_phone()
    await timeline.store.create_customer("Ada", [Identity("phone", phone)])
    await lookup.lookup("phone", phone, max_events=5)  # one pooled connection
    stale = lookup._queue.idle[0]
    statements = Statements(lookup)
    held = statements.hold()
    callers = [asyncio.ensure_future(lookup.lookup("phone", phone, max_events=5)) for _ in range(5)]
    await asyncio.wait_for(statements.holding.wait(), 5)
    await _terminate(pg_url, stale.get_server_pid())  # the database restarted, say
    held.set()
    results = await asyncio.gather(*callers)
    assert all(r.history is not None and r.history.display_name == "Ada" for r in results)
    assert statements.sizes == [5, 5]
    assert statements.connections[0] is stale and statements.connections[1] is not stale
    assert lookup._queue.idle == [statements.connections[1]]


async def test_a_batch_failing_on_a_fresh_connection_fails_each_caller(
    lookup: FastCallerLookup,
) -> None:
    async def broken(conn: Any, batch: Sequence[Pending]) -> list[Row]:
        raise asyncpg.InterfaceError("the server went away")

    await lookup.warm_up()
    lookup._driver.fetch = broken  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(lookup.lookup("phone", f"+1999000{i:04d}", max_events=5) for i in range(6)),
        return_exceptions=True,
    )
    assert all(isinstance(r, TimelineUnavailable) for r in results)
    assert len({id(r) for r in results}) == 6  # each caller its own exception
    assert all(isinstance(getattr(r, "__cause__", None), asyncpg.InterfaceError) for r in results)
    assert not lookup._queue.idle and not lookup._queue.servers  # both connections dropped


async def test_an_unreachable_database_fails_every_waiting_caller() -> None:
    lookup = FastCallerLookup("postgresql://postgres@127.0.0.1:1/none", pool_size=2)
    try:
        results = await asyncio.gather(
            *(lookup.lookup("phone", f"+1999000{i:04d}", max_events=5) for i in range(10)),
            return_exceptions=True,
        )
    finally:
        await lookup.close()
    assert all(isinstance(r, TimelineUnavailable) for r in results)


async def test_closing_fails_the_lookups_still_waiting(lookup: FastCallerLookup) -> None:
    statements = Statements(lookup)
    held = statements.hold()
    first = asyncio.ensure_future(lookup.lookup("phone", "+19990000000", max_events=5))
    await asyncio.wait_for(statements.holding.wait(), 5)  # in flight
    queued = [
        asyncio.ensure_future(lookup.lookup("phone", f"+1999000{i:04d}", max_events=5))
        for i in range(1, 4)
    ]
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(lookup.close())
    await asyncio.sleep(0)
    held.set()
    await closing
    assert isinstance(await first, LookupResult)  # in flight: answered
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert all(isinstance(r, TimelineUnavailable) for r in results)
    with pytest.raises(TimelineUnavailable):
        await lookup.lookup("phone", "+19990000001", max_events=5)
    assert statements.sizes == [1]


async def test_sqlite_answers_one_lookup_per_statement(sqlite_url: str) -> None:
    lookup = FastCallerLookup(sqlite_url, pool_size=1, inline=False)
    statements = Statements(lookup)
    try:
        results = await asyncio.gather(
            *(lookup.lookup("phone", f"+1999000{i:04d}", max_events=5) for i in range(5))
        )
    finally:
        await lookup.close()
    assert statements.sizes == [1] * 5
    assert all(r == LookupResult(history=None) for r in results)


async def _terminate(url: str, pid: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
