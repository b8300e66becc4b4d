"""The outbox publisher: published rows are deleted by the reader's next append while rows
keep coming, on their own once nothing new came for ``poll_s``, and batch by batch while a
backlog goes out."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from crm_bridge.bus import InMemoryEventBus
from crm_bridge.calls import BridgeState, SqliteOutbox
from crm_bridge.calls.publisher import OutboxPublisher
from tests.component.test_call_bridge_consumer import task_of
from tests.component.test_call_bridge_outbox import PER_CALL, Counted, calls

WAIT_S = 10.0


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def publishing(
    outbox: SqliteOutbox, *, batch: int = 1000, poll_s: float = 3600
) -> AsyncIterator[OutboxPublisher]:
    publisher = OutboxPublisher(
        outbox, InMemoryEventBus(), "calls", window_s=0, batch=batch, poll_s=poll_s
    )
    async with task_of(publisher.run()):
        yield publisher


async def test_published_rows_leave_with_the_next_append(tmp_path: Path) -> None:
    outbox = await Counted.open(tmp_path / "outbox.db")
    try:
        async with publishing(outbox) as publisher:
            await outbox.append(calls(2), BridgeState().take_changes())
            publisher.notify()
            await eventually(lambda: _true(publisher.published == 2 * PER_CALL), "published")
            runs = outbox.runs
            assert await outbox.pending() == 2 * PER_CALL  # no delete of its own ...
            await outbox.append(calls(1, first=5), BridgeState().take_changes())
            assert await outbox.pending() == PER_CALL  # ... the append took them
            assert outbox.runs == runs + 3  # pending() twice and the append: nothing else
    finally:
        await outbox.close()


async def test_idle_publisher_deletes_what_went_out(tmp_path: Path) -> None:
    outbox = await SqliteOutbox.open(tmp_path / "outbox.db")
    try:
        async with publishing(outbox, poll_s=0.05) as publisher:
            await outbox.append(calls(2), BridgeState().take_changes())
            publisher.notify()
            await eventually(lambda: _true(publisher.published == 2 * PER_CALL), "published")
            await eventually(lambda: _none_left(outbox), "rows deleted once idle")
    finally:
        await outbox.close()


async def test_a_backlog_is_deleted_batch_by_batch(tmp_path: Path) -> None:
    """Rows left by a previous run (or piled up while the bus was down) go out in full
    batches; each is deleted as it goes, so a crash half way republishes little."""
    path = tmp_path / "outbox.db"
    first = await SqliteOutbox.open(path)
    try:
        await first.append(calls(4), BridgeState().take_changes())
    finally:
        await first.close()
    outbox = await SqliteOutbox.open(path)
    try:
        left: list[int] = []
        original = outbox.flush_forgotten

        async def flush() -> int:
            deleted = await original()
            left.append(await outbox.pending())
            return deleted

        outbox.flush_forgotten = flush  # type: ignore[method-assign]
        async with publishing(outbox, batch=PER_CALL) as publisher:
            publisher.notify()
            await eventually(lambda: _true(publisher.published == 4 * PER_CALL), "published")
        assert left[:3] == [3 * PER_CALL, 2 * PER_CALL, PER_CALL]
    finally:
        await outbox.close()


async def _true(value: bool) -> bool:
    return value


async def _none_left(outbox: SqliteOutbox) -> bool:
    return await outbox.pending() == 0
