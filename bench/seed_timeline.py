"""Bulk-seed the timeline with N customers and M events (realistic skew) for benchmarks.

    .venv/bin/python bench/seed_timeline.py --url postgresql://postgres@127.0.0.1/bench \
        --customers 1000000 --events 10000000
    .venv/bin/python bench/seed_timeline.py --url sqlite:///data/bench.db \
        --customers 10000 --events 100000

PostgreSQL: binary COPY (asyncpg ``copy_records_to_table``; timestamps pre-encoded as
microseconds). SQLite: ``executemany`` in big transactions. Seeds an empty database
only: secondary indexes are dropped for the load and rebuilt afterwards (much faster),
then (VACUUM) ANALYZE. Customer ``i`` has phone ``phone_for(i)`` (``+1555XXXXXXX``, unique); a few
customers own most events; each customer has a favourite intent.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
from sqlalchemy import Index
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.schema import CreateIndex

from ivr_engine.timeline.migrate import upgrade
from ivr_engine.timeline.schema import identities, timeline_events
from ivr_engine.timeline.urls import parse_database_url

INTENTS = ("billing", "tech_support", "operator", "outage", "new_service", "moving", "cancel")
INTENT_WEIGHTS = (30, 20, 15, 10, 10, 8, 7)
CHANNELS = {"voice": 50, "chat": 20, "email": 10, "sms": 10, "messenger": 10}
EVENT_TYPE = {
    "voice": "call.ivr",
    "chat": "chat.conversation",
    "email": "email.received",
    "sms": "sms.received",
    "messenger": "messenger.conversation",
}
SKEW = 1.6  # customer index = N * U**SKEW: low indices get most of the events
FAVOURITE_SHARE = 0.6
MAX_AGE_S = 365 * 86400
MEAN_AGE_S = 60 * 86400
CHUNK = 100_000
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
CUSTOMER_COLUMNS = ("id", "display_name", "created_at", "updated_at")
IDENTITY_COLUMNS = ("id", "customer_id", "kind", "value")
FIELD_COLUMNS = ("customer_id", "name", "value", "source_channel", "updated_at", "verified")
# The columns Seed.events yields, in its order; the others (saved_fields, added by migration
# 0005 for API replays) are NULL for seeded events, as for calls and messages.
EVENT_COLUMNS = [
    "seq", "event_id", "customer_id", "occurred_at", "recorded_at", "channel", "event_type",
    "intent", "case_id", "data",
]  # fmt: skip
SECONDARY_INDEXES: tuple[Index, ...] = tuple(
    ix for t in (identities, timeline_events) for ix in sorted(t.indexes, key=lambda i: str(i.name))
)


def _table(weights: dict[str, int] | Sequence[tuple[str, int]]) -> list[str]:
    items = weights.items() if isinstance(weights, dict) else weights
    return [name for name, weight in items for _ in range(weight)]  # 100 slots


INTENT_SLOTS = _table(list(zip(INTENTS, INTENT_WEIGHTS, strict=True)))
CHANNEL_SLOTS = _table(CHANNELS)


def phone_for(i: int) -> str:
    return f"+1555{(i * 7919 + 1234567) % 10_000_000:07d}"  # 7919 ⟂ 10^7: no repeats


def customer_id_for(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class Seed:
    """Deterministic data; timestamps are microseconds before ``now``."""

    def __init__(self, customers: int, events: int, seed: int) -> None:
        self.n, self.m = customers, events
        rng = random.Random(seed)
        self.rng = rng
        self.ids = [customer_id_for(rng) for _ in range(customers)]
        self.now_us = int((datetime.now(UTC) - PG_EPOCH).total_seconds() * 1e6)

    def customers(self) -> Iterator[tuple[str, str | None, int, int]]:
        for i, cid in enumerate(self.ids):
            created = self.now_us - 400 * 86400 * 10**6 + i
            yield cid, f"Customer {i}" if i % 3 else None, created, created

    def identities(self) -> Iterator[tuple[int, str, str, str]]:
        row = 0
        for i, cid in enumerate(self.ids):
            row += 1
            yield row, cid, "phone", phone_for(i)
            if i % 10 < 3:
                row += 1
                yield row, cid, "email", f"customer{i}@example.com"

    def fields(self) -> Iterator[tuple[str, str, str, str, int, bool]]:
        for i, cid in enumerate(self.ids):
            if i % 5 == 0:
                at = self.now_us - (i % 300) * 86400 * 10**6
                yield cid, "account_number", f"{40_000_000 + i}", "chat", at, i % 10 == 0

    def events(self, start: int, count: int) -> list[tuple[Any, ...]]:
        """(seq, event_id, customer_id, occurred_us, recorded_us, channel, type, intent,
        case_id, data)"""
        rand, n, ids, now = self.rng.random, self.n, self.ids, self.now_us
        rows = []
        for seq in range(start + 1, start + count + 1):
            c = int(n * rand() ** SKEW)
            if rand() < FAVOURITE_SHARE:
                intent: str | None = INTENTS[(c * 2654435761) % 7]
            else:
                intent = INTENT_SLOTS[int(rand() * 100)]
            channel = CHANNEL_SLOTS[int(rand() * 100)]
            age_us = int(min(-math.log(1.0 - rand()) * MEAN_AGE_S, MAX_AGE_S) * 1e6)
            event_type, case_id = EVENT_TYPE[channel], None
            if seq % 20 == 0:
                event_type, case_id = "case.opened", f"CASE-{seq}"
            at = now - age_us
            rows.append((seq, f"seed-{seq:010d}", ids[c], at, at, channel, event_type,
                         intent, case_id, "{}"))  # fmt: skip
        return rows


def _report(what: str, rows: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    print(f"{what:>16}: {rows:>11,} rows in {elapsed:7.1f} s = {rows / elapsed:>10,.0f} rows/s")


def _chunks(total: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, CHUNK):
        yield start, min(CHUNK, total - start)


# --------------------------------------------------------------------------- PostgreSQL


async def seed_postgres(dsn: str, seed: Seed) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.set_type_codec(
            "timestamptz", schema="pg_catalog", encoder=_us, decoder=_us, format="tuple"
        )
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM customers)"):
            raise SystemExit("the database is not empty: seed a fresh one")
        for ix in SECONDARY_INDEXES:
            await conn.execute(f"DROP INDEX IF EXISTS {ix.name}")
        try:  # skip the per-row foreign-key triggers (the data is consistent by construction)
            await conn.execute("SET session_replication_role = replica")
        except asyncpg.InsufficientPrivilegeError:
            print("not a superuser: foreign keys are checked row by row (slower)")
        await _copy(conn, "customers", CUSTOMER_COLUMNS, seed.customers)
        await _copy(conn, "identities", IDENTITY_COLUMNS, seed.identities)
        await _copy(conn, "known_fields", FIELD_COLUMNS, seed.fields)
        started = time.perf_counter()
        for start, count in _chunks(seed.m):
            rows = seed.events(start, count)
            await conn.copy_records_to_table("timeline_events", records=rows, columns=EVENT_COLUMNS)
        _report("timeline_events", seed.m, started)
        started = time.perf_counter()
        await conn.execute("RESET session_replication_role")
        await conn.execute("SET maintenance_work_mem = '512MB'")
        for ix in SECONDARY_INDEXES:
            ddl = CreateIndex(ix).compile(dialect=PGDialect())  # type: ignore[no-untyped-call]
            await conn.execute(str(ddl))
        for table, column in (("identities", "id"), ("timeline_events", "seq")):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"(SELECT coalesce(max({column}), 1) FROM {table}))"
            )
        await conn.execute("VACUUM ANALYZE")  # also sets the visibility map: index-only scans
        print(f"{'indexes+analyze':>16}: {time.perf_counter() - started:7.1f} s")
    finally:
        await conn.close()


def _us(value: Any) -> Any:
    return (value,) if isinstance(value, int) else value


async def _copy(
    conn: Any, table: str, columns: Sequence[str], rows: Callable[[], Iterator[Any]]
) -> None:
    started = time.perf_counter()
    data = list(rows())
    await conn.copy_records_to_table(table, records=data, columns=list(columns))
    _report(table, len(data), started)


# --------------------------------------------------------------------------- SQLite


def seed_sqlite(path: Path, seed: Seed) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=OFF", "cache_size=-262144"):
            conn.execute(f"PRAGMA {pragma}")
        if conn.execute("SELECT EXISTS (SELECT 1 FROM customers)").fetchone()[0]:
            raise SystemExit("the database is not empty: seed a fresh one")
        for ix in SECONDARY_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {ix.name}")
        ts = _sqlite_text
        _insert(conn, "customers", CUSTOMER_COLUMNS,
                ((c, d, ts(a), ts(b)) for c, d, a, b in seed.customers()))  # fmt: skip
        _insert(conn, "identities", IDENTITY_COLUMNS, seed.identities())
        _insert(conn, "known_fields", FIELD_COLUMNS,
                ((c, n, v, s, ts(at), ok) for c, n, v, s, at, ok in seed.fields()))  # fmt: skip
        started = time.perf_counter()
        for start, count in _chunks(seed.m):
            rows = []
            for s, e, c, o, r, ch, t, i, k, d in seed.events(start, count):
                text = ts(o)
                rows.append((s, e, c, text, text if r == o else ts(r), ch, t, i, k, d))
            conn.execute("BEGIN")
            conn.executemany(_insert_sql("timeline_events", EVENT_COLUMNS), rows)
            conn.execute("COMMIT")
        _report("timeline_events", seed.m, started)
        started = time.perf_counter()
        for ix in SECONDARY_INDEXES:
            conn.execute(str(CreateIndex(ix).compile(dialect=SQLiteDialect())))
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print(f"{'indexes+analyze':>16}: {time.perf_counter() - started:7.1f} s")
    finally:
        conn.close()


def _sqlite_text(us: int) -> str:
    return (
        (PG_EPOCH + timedelta(microseconds=us)).replace(tzinfo=None).isoformat(" ", "microseconds")
    )


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _insert(
    conn: sqlite3.Connection, table: str, columns: Sequence[str], rows: Iterator[Any]
) -> None:
    started = time.perf_counter()
    conn.execute("BEGIN")
    cursor = conn.executemany(_insert_sql(table, columns), rows)
    conn.execute("COMMIT")
    _report(table, cursor.rowcount, started)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="sqlite:///FILE or postgresql://...")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    url = parse_database_url(args.url)
    asyncio.run(upgrade(args.url))
    started = time.perf_counter()
    seed = Seed(args.customers, args.events, args.seed)
    if url.postgres_dsn is not None:
        asyncio.run(seed_postgres(url.postgres_dsn, seed))
    else:
        assert url.sqlite_path is not None
        seed_sqlite(url.sqlite_path, seed)
    total = args.customers + args.events
    _report("total", total, started)
    print(f"example phones: {phone_for(0)} (busiest customer), {phone_for(args.customers - 1)}")


if __name__ == "__main__":
    main()
