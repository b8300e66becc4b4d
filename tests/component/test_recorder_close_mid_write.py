"""``close`` while a batch is still being written (the database hangs on a lock past the
grace period): the batch is spooled, not dropped. A change this session cleared the batch in
flight on the cancel too, so ``close`` had nothing to spool and logged nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import asyncpg
import pytest

from ivr_engine.flows.recorder import SPOOL_FILE
from ivr_engine.timeline import FastCallWriter
from tests.component.recorder_support import Switchable, plain_id, record, recorder

pytestmark = pytest.mark.postgres


async def test_a_batch_cut_off_by_close_is_spooled(pg_url: str, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    locker = await asyncpg.connect(pg_url)
    real = FastCallWriter(pg_url)
    rec = recorder(Switchable(real), tmp_path / "spool", write_timeout_s=30)
    await rec.start()
    try:
        await locker.execute("BEGIN")
        await locker.execute("LOCK TABLE timeline_events IN ACCESS EXCLUSIVE MODE")
        for n in range(3):
            rec.submit(record("+15550000077", call_id=f"{tag}-{n}"))
        await asyncio.sleep(0.5)  # the batch is in the write, waiting for the lock
        await rec.close(grace_s=0.3)
    finally:
        await locker.execute("ROLLBACK")
        await locker.close()
        await real.close()
    spooled = (tmp_path / "spool" / SPOOL_FILE).read_text().splitlines()
    ids = sorted(plain_id(json.loads(line)["events"][0]["event_id"]) for line in spooled)
    assert ids == [f"voice:{tag}-{n}:ivr" for n in range(3)]
