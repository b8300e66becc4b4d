"""The call outbox: events and live-call state committed together, kept across a reopen,
ids never reused, one process per file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from crm_bridge.calls import BridgeState, NormalisedEvent, OutboxBusy, SqliteOutbox
from crm_bridge.calls.outbox import OutboxRow, OutboxSync
from tests.component.test_call_bridge_fakes import Switch
from tests.component.test_call_bridge_normalise import run

T = TypeVar("T")


@contextlib.asynccontextmanager
async def opened(path: Path, sync: OutboxSync = "full") -> AsyncIterator[SqliteOutbox]:
    outbox = await SqliteOutbox.open(path, sync=sync)
    try:
        yield outbox
    finally:
        await outbox.close()


async def test_events_and_state_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    switch = Switch()
    done = switch.inbound("+15551230001")
    switch.hangup(done)
    live = switch.inbound("+15551230002")
    switch.answer(live)
    state = BridgeState()
    events = run(switch.take_events(), state)
    async with opened(path) as outbox:
        await outbox.append(events, state.take_changes())
        rows = await outbox.read_after(0, 10)
        assert [r.event["event_id"] for r in rows] == [e.event_id for e in events]
        assert await outbox.delete_through(rows[1].id) == 2

    async with opened(path, "normal") as outbox:
        left = await outbox.read_after(0, 10)
        assert [r.event["event_id"] for r in left] == [e.event_id for e in events[2:]]
        (restored,) = await outbox.live_calls()
        assert restored == state.calls[live.uniqueid]  # answered_at, counters ... included
        await outbox.delete_through(left[-1].id)  # the highest id is gone too
        switch.hangup(live)
        again = BridgeState.restore(state.config, [restored])
        ended = run(switch.take_events(), again)
        assert [e.kind.value for e in ended] == ["call.ended"]
        assert ended[0].data["ring_ms"] == 0 and ended[0].seq == 2
        await outbox.append(ended, again.take_changes())
        (newer,) = await outbox.read_after(0, 10)
        assert newer.id > left[-1].id  # AUTOINCREMENT: a publisher's watermark stays valid
        assert await outbox.live_calls() == []


async def test_a_second_process_cannot_open_the_same_outbox(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with opened(path):
        with pytest.raises(OutboxBusy, match="another process"):
            await SqliteOutbox.open(path)
    async with opened(path):  # released on close (and by the kernel on SIGKILL)
        pass


async def test_rows_of_an_older_file_keep_their_partition_key(tmp_path: Path) -> None:
    """A file from before the ``partition_key`` column: upgraded on open, old rows read it
    from their body, and rows are sent as stored (the bus's JSON text)."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL,"
        " body TEXT NOT NULL);"
        "CREATE TABLE live_calls (call_id TEXT PRIMARY KEY, state TEXT NOT NULL);"
    )
    body = json.dumps({"event_id": "e1", "partition_key": "call-1", "kind": "call.started"})
    db.execute("INSERT INTO outbox (event_id, body) VALUES ('e1', ?)", (body,))
    db.commit()
    db.close()
    switch = Switch()
    switch.agent_call("+15551230009")
    events = run(switch.take_events())
    async with opened(path) as outbox:
        await outbox.append(events, BridgeState().take_changes())
        old, *new = await outbox.read_after(0, 10)
    assert (old.event_id, old.partition_key, old.body) == ("e1", "call-1", body)
    assert [(r.partition_key, r.event) for r in new] == [(e.call_id, e.to_bus()) for e in events]


class Counted(SqliteOutbox):
    """Counts the statements run on the outbox's thread (each is a thread hop)."""

    runs = 0

    async def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        self.runs += 1
        return await super()._run(work, write=write)


PER_CALL = 5  # call events of an agent call


def calls(n: int, first: int = 0) -> list[NormalisedEvent]:
    switch = Switch()
    for k in range(n):
        switch.agent_call(f"+1555123{first + k:04d}")
    return run(switch.take_events())


async def file_rows(path: Path) -> list[OutboxRow]:
    db = sqlite3.connect(path)
    try:
        found = db.execute("SELECT id, event_id, partition_key, body FROM outbox ORDER BY id")
        return [OutboxRow(*row) for row in found.fetchall()]
    finally:
        db.close()


async def test_appended_rows_are_handed_over_from_memory_as_the_file_has_them(
    tmp_path: Path,
) -> None:
    """The publisher's reads of what this process appended cost no read of the file; rows
    from before this process (a previous run's) come from the file, then the memory."""
    path = tmp_path / "outbox.db"
    async with opened(path) as outbox:
        await outbox.append(calls(2), BridgeState().take_changes())
    outbox = await Counted.open(path)
    try:
        old = await outbox.read_after(0, 100)
        assert outbox.runs == 1 and len(old) == 2 * PER_CALL  # read from the file
        for n in range(3):
            await outbox.append(calls(2, first=10 * n), BridgeState().take_changes())
        runs = outbox.runs
        new = await outbox.read_after(old[-1].id, 100)
        limited = await outbox.read_after(new[2].id, 5)
        assert outbox.runs == runs  # from memory
        assert old + new == await file_rows(path) and len(new) == 6 * PER_CALL
        assert limited == new[3:8]
        assert await outbox.read_after(new[-1].id, 100) == []
    finally:
        await outbox.close()


async def test_forgotten_rows_go_with_the_next_append_or_a_flush(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = await Counted.open(path)
    try:
        await outbox.append(calls(2), BridgeState().take_changes())
        rows = await outbox.read_after(0, 100)
        outbox.forget_through(rows[6].id)
        assert await outbox.pending() == len(rows)  # still there: published again after a crash
        runs = outbox.runs
        await outbox.append(calls(1, first=5), BridgeState().take_changes())
        assert outbox.runs == runs + 1  # the delete rode along in the append's transaction
        left = await file_rows(path)
        assert left[: len(rows) - 7] == rows[7:] and len(left) == len(rows) - 7 + PER_CALL
        assert await outbox.read_after(0, 100) == left  # the memory agrees
        outbox.forget_through(left[-1].id)
        assert await outbox.flush_forgotten() == len(left)
        assert await outbox.flush_forgotten() == 0 and await outbox.pending() == 0
    finally:
        await outbox.close()


async def test_a_full_memory_starts_again_and_older_rows_come_from_the_file(
    tmp_path: Path,
) -> None:
    """While the bus is down the rows pile up: the memory keeps only the newest batches
    (``tail_rows``), the publisher reads the older ones from the file."""
    path = tmp_path / "outbox.db"
    outbox = await Counted.open(path, tail_rows=3 * PER_CALL)
    try:
        for n in range(4):
            await outbox.append(calls(2, first=10 * n), BridgeState().take_changes())
        stored = await file_rows(path)
        runs = outbox.runs
        assert await outbox.read_after(0, 100) == stored  # from the file
        assert await outbox.read_after(stored[10].id, 100) == stored[11:]  # ditto
        assert outbox.runs == runs + 2
        newest = stored[-2 * PER_CALL - 1]  # the memory holds the last append only
        assert await outbox.read_after(newest.id, 100) == stored[-2 * PER_CALL :]
        assert outbox.runs == runs + 2
    finally:
        await outbox.close()


class Stalled(SqliteOutbox):
    """The next transaction waits on its thread until ``go`` is set (``inside`` once there)."""

    inside = threading.Event()
    go = threading.Event()

    async def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        def stalled(db: sqlite3.Connection) -> T:
            self.inside.set()
            self.go.wait(10)
            return work(db)

        return await super()._run(stalled if write else work, write=write)


async def test_an_append_cancelled_on_its_way_leaves_no_gap_in_what_is_handed_over(
    tmp_path: Path,
) -> None:
    """Cancelled while its transaction runs (shutdown), an append may still commit: the
    memory cannot know, so the file answers until the next append. Otherwise its rows would
    be skipped by the publisher and deleted unpublished with the next ones."""
    path = tmp_path / "outbox.db"
    outbox = await Stalled.open(path)
    try:
        outbox.go.set()
        await outbox.append(calls(1), BridgeState().take_changes())
        first = await outbox.read_after(0, 100)
        outbox.go.clear()
        outbox.inside.clear()
        cancelled = asyncio.create_task(outbox.append(calls(1, 1), BridgeState().take_changes()))
        await asyncio.get_running_loop().run_in_executor(None, outbox.inside.wait, 10)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        outbox.go.set()  # the cancelled transaction commits now
        await outbox.append(calls(1, 2), BridgeState().take_changes())
        rest = await outbox.read_after(first[-1].id, 100)
        assert rest == (await file_rows(path))[PER_CALL:] and len(rest) == 2 * PER_CALL
    finally:
        outbox.go.set()
        await outbox.close()
