"""A worker killed half-way through appending to a shared spool leaves a partial last
line: the next call spooled after it is still written (real SQLite), and only the partial
line is rejected. Before, the call was glued onto the partial line and both went to
``calls.rejected.jsonl``, never retried."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ivr_engine.flows.recorder import REJECTED_FILE, SPOOL_FILE
from ivr_engine.timeline import FastCallWriter
from tests.component.recorder_support import (
    DOWN,
    Switchable,
    event_ids,
    record,
    recorder,
    until,
)

PARTIAL = b'{"customer_id":null,"phone":"+1555000","events":[{"event_id":"voice:cut'


async def test_a_call_spooled_after_a_partial_line_is_written(
    sqlite_url: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    real = FastCallWriter(sqlite_url)
    writer = Switchable(real)
    rec = recorder(writer, spool_dir, retry_interval_s=30)  # no idle replay meanwhile
    await rec.start()
    await asyncio.sleep(0.1)  # the start-up replay found nothing
    (spool_dir / SPOOL_FILE).write_bytes(PARTIAL)  # another worker's last, cut-off line
    writer.fail = DOWN
    rec.submit(record("+15550000003", call_id="call-b"))

    async def spooled() -> bool:
        return rec.spooled == 1

    async def written() -> bool:
        return await event_ids(sqlite_url) == ["voice:call-b:ivr", "voice:call-c:ivr"]

    try:
        await until(spooled)
        writer.fail = None
        rec.submit(record("+15550000004", call_id="call-c"))  # written, then the replay
        await until(written)
    finally:
        await rec.close(grace_s=1)
        await real.close()
    assert (spool_dir / REJECTED_FILE).read_bytes() == PARTIAL + b"\n"
