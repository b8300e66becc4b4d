"""The per-call PostgreSQL write, side by side in one run: ``FastCallWriter`` (the whole
batch as ONE statement over column arrays) vs the transaction it replaced (BEGIN, survivor
SELECT, ``executemany`` for events and for fields, COMMIT: five round trips).

    .venv/bin/python bench/writer_batch.py [--url postgresql://postgres@127.0.0.1:5432/test]

Each batch is ``--batch`` finished calls of known customers (2 timeline events and one
known field each), as the call recorder writes them. The two ways alternate batch by batch,
so machine noise hits both alike. Reports wall ms and client CPU ms per batch (p50) and rows/s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from ivr_engine.domain.models import KnownField
from ivr_engine.ports import CustomerWrite, Identity, NewTimelineEvent
from ivr_engine.timeline import FastCallWriter, open_timeline
from ivr_engine.timeline.fast_rows import json_text, row_tuples
from ivr_engine.timeline.fast_sql import FIELD_UPDATE
from ivr_engine.timeline.migrate import upgrade
from ivr_engine.timeline.schema import to_utc

OLD_SURVIVORS = "SELECT id, COALESCE(merged_into, id) FROM customers WHERE id = ANY($1::text[])"
OLD_EVENT = (
    "INSERT INTO timeline_events (event_id, customer_id, occurred_at, recorded_at, channel, "
    "event_type, intent, case_id, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb) "
    "ON CONFLICT (event_id) DO NOTHING"
)
OLD_FIELD = (
    "INSERT INTO known_fields (customer_id, name, value, source_channel, updated_at, verified) "
    f"VALUES ($1, $2, $3, $4, $5, $6) {FIELD_UPDATE}"
)


async def old_write(conn: asyncpg.Connection, batch: list[CustomerWrite]) -> None:
    """The replaced path, as it was: one transaction, five round trips."""
    async with conn.transaction():
        ids = sorted({w.customer_id for w in batch})
        owners = dict(await conn.fetch(OLD_SURVIVORS, ids))
        events, fields = row_tuples(batch, owners, datetime.now(UTC), to_utc, json_text)
        if events:
            await conn.executemany(OLD_EVENT, events)
        if fields:
            await conn.executemany(OLD_FIELD, fields)


def call_batch(customers: list[str], size: int, n: int) -> list[CustomerWrite]:
    now = datetime.now(UTC)
    writes = []
    for k in range(size):
        customer = customers[(n * size + k) % len(customers)]
        call = uuid.uuid4().hex
        events = [
            NewTimelineEvent(f"bench:{call}:{i}", customer, now, "voice", kind, intent="billing",
                             data={"path": ["menu", "billing"], "decision_ms": 0.7})
            for i, kind in enumerate(("call.ivr", "call.routed"))
        ]  # fmt: skip
        fields = [KnownField("account_number", f"{n:08d}", "voice", now)]
        writes.append(CustomerWrite(customer, events, fields))
    return writes


async def main(args: argparse.Namespace) -> None:
    name = f"bench_writer_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = args.url.rsplit("/", 1)[0] + "/" + name
    try:
        await upgrade(url)
        timeline = await open_timeline(url)
        try:
            customers = [
                (
                    await timeline.store.create_customer(None, [Identity("phone", f"+1555{i:07d}")])
                ).customer_id
                for i in range(args.customers)
            ]
        finally:
            await timeline.close()
        print(f"{'batch':>5} | way | wall ms p50 | client CPU ms p50 | rows/s (wall)")
        for size in args.batches:
            await one_size(url, customers, size, args.rounds)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def one_size(url: str, customers: list[str], size: int, rounds: int) -> None:
    writer = FastCallWriter(url)
    conn = await asyncpg.connect(url.replace("postgresql://", "postgres://", 1))
    timings: dict[str, tuple[list[float], list[float]]] = {"one statement": ([], []),
                                                           "transaction": ([], [])}  # fmt: skip
    try:
        for n in range(rounds):
            for way in timings:
                batch = call_batch(customers, size, n)
                wall, cpu = time.perf_counter(), time.process_time()
                if way == "one statement":
                    await writer.write(batch)
                else:
                    await old_write(conn, batch)
                timings[way][0].append((time.perf_counter() - wall) * 1000)
                timings[way][1].append((time.process_time() - cpu) * 1000)
    finally:
        await writer.close()
        await conn.close()
    rows = size * 3
    for way, (walls, cpus) in timings.items():
        wall_ms = statistics.median(walls)
        print(f"{size:>5} | {way} | {wall_ms:.2f} | {statistics.median(cpus):.2f} | "
              f"{rows / wall_ms * 1000:,.0f}")  # fmt: skip


def parse() -> Any:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10, 100, 500])
    parser.add_argument("--rounds", type=int, default=300)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
