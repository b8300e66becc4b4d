"""The call writer's one-statement batch (``PG_BATCH``) finds its customers through the
primary key, never by reading every customer: with a million customers a scan made each
batch of calls take seconds, past the writer's timeout, so every call went to the spool
(seen in bench/decision_latency.py). Asserted on PostgreSQL's own plan for the statement,
with sequential scans disabled so that a small test table shows the plan a large one gets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from ivr_engine.timeline.fast_sql import PG_BATCH
from ivr_engine.timeline.urls import parse_database_url

pytestmark = pytest.mark.postgres


def scans_of(plan: dict[str, Any], table: str) -> Iterator[dict[str, Any]]:
    if plan.get("Relation Name") == table:
        yield plan
    for child in plan.get("Plans", []):
        yield from scans_of(child, table)


async def test_batch_reads_customers_by_key_only(pg_url: str) -> None:
    dsn = parse_database_url(pg_url).postgres_dsn
    assert dsn is not None
    now = datetime.now(UTC)
    events = [["call-1"], ["c-1"], [now], ["voice"], ["call.ivr"], ["billing"], [None], ["{}"]]
    fields = [["c-1"], ["account_number"], ["123"], ["voice"], [now], [False]]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET enable_seqscan = off")
        statement = await conn.prepare(PG_BATCH)
        plan = (await statement.explain(["c-1"], now, *events, *fields))[0]["Plan"]
    finally:
        await conn.close()
    scans = list(scans_of(plan, "customers"))
    assert scans, plan
    for scan in scans:  # a bitmap heap scan reads the rows its index scan found
        by_key = "Index Cond" in scan or "Recheck Cond" in scan
        assert by_key, f"customers read without a key: {scan}"
