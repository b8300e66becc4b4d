"""The lookup queue with an in-memory driver: the edges a real database cannot be made to
hit on cue (a connection task cancelled mid-statement, lookups queued behind the warm-up,
a driver answering the wrong number of rows)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from ivr_engine.domain.errors import TimelineUnavailable
from ivr_engine.timeline.lookup_queue import LookupQueue, Pending, Row


class FakeDriver:
    errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, batch_cap: int = 8) -> None:
        self.batch_cap = batch_cap
        self.batches: list[list[str]] = []
        self.connects = 0
        self.discarded = 0
        self.gate: asyncio.Event | None = None  # statements wait on it when set
        self.connecting: asyncio.Event | None = None
        self.rows_short = False

    async def connect(self) -> Any:
        self.connects += 1
        if self.connecting is not None:
            await self.connecting.wait()
        return object()

    async def fetch(self, conn: Any, batch: Sequence[Pending]) -> list[Row]:
        self.batches.append([p.value for p in batch])
        if self.gate is not None:
            await self.gate.wait()
        rows: list[Row] = [(p.value, p.max_events) for p in batch]
        return rows[1:] if self.rows_short else rows

    def discard(self, conn: Any) -> None:
        self.discarded += 1

    async def close(self, conn: Any) -> None:
        pass


async def test_a_connection_task_cancelled_mid_statement_fails_every_waiter() -> None:
    driver = FakeDriver()
    driver.gate = asyncio.Event()
    queue = LookupQueue(driver, 1, "fake")
    first = queue.submit("phone", "a", 5)
    await asyncio.sleep(0)  # the connection task sends "a"
    queued = [queue.submit("phone", v, 5) for v in "bc"]
    (server,) = queue.servers
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server
    for answer in (first, *queued):
        with pytest.raises(TimelineUnavailable, match="interrupted"):
            await answer
    assert driver.discarded == 1  # its state unknown: not pooled
    assert not queue.servers and not queue.idle


async def test_lookups_queued_behind_the_warm_up_use_its_connection() -> None:
    driver = FakeDriver()
    driver.connecting = asyncio.Event()
    queue = LookupQueue(driver, 1, "fake")
    warming = asyncio.ensure_future(queue.warm_up())
    await asyncio.sleep(0)
    answers = [queue.submit("phone", v, 5) for v in "ab"]
    assert not queue.servers  # the only connection is being opened
    driver.connecting.set()
    assert await warming is True
    assert [await a for a in answers] == [("a", 5), ("b", 5)]
    assert driver.connects == 1 and driver.batches == [["a", "b"]]


async def test_a_driver_answering_too_few_rows_gives_nobody_a_wrong_row() -> None:
    driver = FakeDriver()
    driver.rows_short = True
    queue = LookupQueue(driver, 1, "fake")
    answers = [queue.submit("phone", v, 5) for v in "abc"]
    for answer in answers:
        with pytest.raises(TimelineUnavailable, match="2 rows for 3 lookups"):
            await answer


async def test_each_lookup_keeps_its_own_max_events_in_a_batch() -> None:
    driver = FakeDriver(batch_cap=2)
    queue = LookupQueue(driver, 1, "fake")
    answers = [queue.submit("phone", v, n) for v, n in (("a", 1), ("b", 20), ("c", 0))]
    assert [await a for a in answers] == [("a", 1), ("b", 20), ("c", 0)]
    assert driver.batches == [["a", "b"], ["c"]]
    await queue.close()
    with pytest.raises(TimelineUnavailable, match="closed"):
        queue.submit("phone", "d", 5)
