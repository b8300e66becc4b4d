"""The benchmarks' seeder (bench/seed_timeline.py) fills a migrated timeline, SQLite and
PostgreSQL, with rows the engine's own lookup reads: a schema change that the seeder does not
follow (migration 0005's ``saved_fields`` did) breaks here, not in a 10-minute benchmark."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import pytest

REPO = Path(__file__).resolve().parents[2]
SEEDER = REPO / "bench" / "seed_timeline.py"
CUSTOMERS, EVENTS = 40, 400
BUSIEST_PHONE = "+15551234567"  # phone_for(0)


async def seed(url: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SEEDER), "--url", url,
        "--customers", str(CUSTOMERS), "--events", str(EVENTS),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=REPO,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    return text


COUNTS = (
    "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM timeline_events), "
    "(SELECT count(*) FROM timeline_events WHERE saved_fields IS NOT NULL), "
    "(SELECT count(*) FROM timeline_events e JOIN identities i ON i.customer_id = e.customer_id "
    f"WHERE i.kind = 'phone' AND i.value = '{BUSIEST_PHONE}')"
)


async def test_seeds_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "seeded.db"
    await seed(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        customers, events, with_saved, busiest = conn.execute(COUNTS).fetchone()
    assert (customers, events, with_saved) == (CUSTOMERS, EVENTS, 0)
    assert busiest > EVENTS // CUSTOMERS  # the skew: customer 0 owns more than its share


@pytest.mark.postgres
async def test_seeds_postgresql(
    new_pg_database: Callable[..., Coroutine[Any, Any, str]],
) -> None:
    url = await new_pg_database()
    await seed(url)
    conn = await asyncpg.connect(url)
    try:
        customers, events, with_saved, busiest = await conn.fetchrow(COUNTS)
    finally:
        await conn.close()
    assert (customers, events, with_saved) == (CUSTOMERS, EVENTS, 0)
    assert busiest > EVENTS // CUSTOMERS
