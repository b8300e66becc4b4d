"""PostgreSQL refusing one call's data (a NUL in its text, an id longer than the column)
costs only that call: it goes to ``calls.rejected.jsonl`` and the calls around it are
written. Before, the refusal failed the whole batch as if the database were down: the
good calls were spooled with it, and every replay (the whole spool in one statement)
failed the same way for ever. What a call records is also made storable where that is
clearly right: NULs taken out, an over-long call id cut to a unique key."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from ivr_engine.flows.call_record import to_write
from ivr_engine.flows.recorder import REJECTED_FILE, SPOOL_FILE
from ivr_engine.flows.spool_lines import write_to_json
from ivr_engine.timeline import FastCallWriter
from tests.component.recorder_support import Switchable, event_ids, record, recorder, until

pytestmark = pytest.mark.postgres


def line(call_id: str, caller: str = "+15550000010") -> str:
    return write_to_json(to_write(record(caller, call_id=call_id)))


async def mine(url: str, tag: str) -> list[str]:
    return [e for e in await event_ids(url) if tag in e]


async def test_refused_spooled_calls_are_rejected_and_the_others_written(
    pg_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    good = [line(f"{tag}-{n}") for n in range(5)]
    nul = line(f"{tag}-nul").replace('"menu":"main"', '"menu":"ma\\u0000in"')
    long = json.loads(line(f"{tag}-long"))
    long["events"][0]["event_id"] = f"voice:{tag}-{'x' * 250}:ivr"  # spooled by an old version
    refused = [nul, json.dumps(long, separators=(",", ":"))]
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    lines = [good[0], refused[0], *good[1:4], refused[1], good[4]]
    (spool_dir / SPOOL_FILE).write_text("".join(f"{t}\n" for t in lines))
    real = FastCallWriter(pg_url)
    rec = recorder(Switchable(real), spool_dir)
    await rec.start()

    async def written() -> bool:
        return len(await mine(pg_url, tag)) == 5

    try:
        await until(written)
    finally:
        await rec.close(grace_s=1)
        await real.close()
    assert await mine(pg_url, tag) == sorted(f"voice:{tag}-{n}:ivr" for n in range(5))
    kept = (spool_dir / REJECTED_FILE).read_text().splitlines()
    assert [json.loads(k)["events"][0]["event_id"] for k in kept] == [
        json.loads(r)["events"][0]["event_id"] for r in refused
    ]
    assert not (spool_dir / SPOOL_FILE).exists()  # nothing left to replay for ever


async def test_a_nul_in_the_caller_id_and_a_long_call_id_are_stored(
    pg_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    real = FastCallWriter(pg_url)
    rec = recorder(Switchable(real), tmp_path / "spool", linger_s=0.2)
    await rec.start()
    odd = record(None, call_id=f"{tag}-nul")
    odd.call = odd.call.__class__(
        odd.call.call_id, "+1555\x000000", "PJSIP/x\x00", "main", odd.call.started_at
    )
    rec.submit(odd)
    rec.submit(record("+15550000011", call_id=f"{tag}-{'y' * 300}"))
    rec.submit(record("+15550000012", call_id=f"{tag}-fine"))

    async def written() -> bool:
        return len(await mine(pg_url, tag)) == 3

    try:
        await until(written)
    finally:
        await rec.close(grace_s=1)
        await real.close()
    stored = await mine(pg_url, tag)
    assert f"voice:{tag}-nul:ivr" in stored and f"voice:{tag}-fine:ivr" in stored
    assert all(len(e) <= 200 for e in stored)
    assert not (tmp_path / "spool" / REJECTED_FILE).exists()
