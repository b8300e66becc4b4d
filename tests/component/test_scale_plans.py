"""The store's statements that a plan audit at 1 M customers / 10 M events found reading far
more than they return (a merge read every customer; a busy customer's or a case's page
read and sorted all of its events), asserted on each database's own plan: PostgreSQL's
with sequential scans disabled, so a small test table shows the plan a large one gets, and
SQLite's ``EXPLAIN QUERY PLAN`` (no ``SCAN`` of a big table, no temporary sort)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ClauseElement

from ivr_engine.timeline import sql
from ivr_engine.timeline.urls import parse_database_url

CUSTOMER, OTHER, CASE = "c-1", "c-2", "CASE-1"
STATEMENTS: dict[str, ClauseElement] = {
    "merge re-points the customers merged into its source": sql.repoint_merged(CUSTOMER, OTHER),
    "timeline, first page": sql.timeline_page_query(CUSTOMER, 51, None),
    "timeline, a later page": sql.timeline_page_query(CUSTOMER, 51, 1000),
    "case, first page": sql.case_page_query(CASE, 51, None),
    "case, a later page": sql.case_page_query(CASE, 51, 1000),
}
BIG_TABLES = ("customers", "timeline_events")


def literal(statement: ClauseElement, dialect: Any) -> str:
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


@pytest.mark.postgres
@pytest.mark.parametrize("name", STATEMENTS)
async def test_postgres_reads_by_key_and_does_not_sort(pg_url: str, name: str) -> None:
    dsn = parse_database_url(pg_url).postgres_dsn
    assert dsn is not None
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET enable_seqscan = off")
        text = literal(STATEMENTS[name], postgresql.dialect())
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {text}")
    finally:
        await conn.close()
    root = json.loads(plan)[0]["Plan"]
    scans = [
        n for n in nodes(root) if n.get("Relation Name") in BIG_TABLES and "Scan" in n["Node Type"]
    ]
    assert scans, root
    for scan in scans:  # a bitmap heap scan reads the rows its index scan found
        assert "Index Cond" in scan or "Recheck Cond" in scan, f"{name}: read without a key: {scan}"
    sorts = [n for n in nodes(root) if n["Node Type"] in ("Sort", "Incremental Sort")]
    assert not sorts, f"{name}: sorts the rows it read: {root}"


@pytest.mark.parametrize("name", STATEMENTS)
def test_sqlite_searches_an_index_and_does_not_sort(sqlite_url: str, name: str) -> None:
    path = parse_database_url(sqlite_url).sqlite_path
    assert path is not None
    conn = sqlite3.connect(path)
    try:
        text = literal(STATEMENTS[name], sqlite.dialect())
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {text}")]
    finally:
        conn.close()
    assert plan, name
    for step in plan:
        assert not any(step.startswith(f"SCAN {t}") for t in BIG_TABLES), f"{name}: {plan}"
        assert "TEMP B-TREE" not in step, f"{name}: {plan}"
