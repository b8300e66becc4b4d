"""The call outbox: events and live-call state committed together, kept across a reopen,
ids never reused, one process per file."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crm_bridge.calls import BridgeState, OutboxBusy, SqliteOutbox
from crm_bridge.calls.outbox import OutboxSync
from tests.component.test_call_bridge_fakes import Switch
from tests.component.test_call_bridge_normalise import run


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
