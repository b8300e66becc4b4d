"""The bridge's own CPU per AMI event, in one process, without sockets, disks or Redis.

    .venv/bin/python bench/bridge_cpu.py --calls 3000 [--concurrent 100] [--repeat 5]
    valgrind --tool=callgrind .venv/bin/python bench/bridge_cpu.py --calls 300 --repeat 1

The same agent calls as bench/bridge_throughput.py (15 AMI events, 7 timeline events each;
``Timestamp`` from the fake switch's virtual clock, so every run is identical), through the
bridge's real code with its I/O replaced:

* reader side: the AMI bytes, ``--chunk`` messages at a time, into the real
  ``AmiConnection.serve`` (an in-memory ``StreamReader``) → ``Subscription`` → ``AmiReader``
  (normalise, group commit) → ``SqliteOutbox.append`` up to the SQL, whose rows are kept;
* consumer side: those rows as Redis would hand them back (``XREADGROUP`` replies in
  redis-py's shape, as bytes, 500 entries a read, through ``_RedisLog.read_new``) →
  ``TimelineConsumer`` (decode, customers from an in-memory directory) → the timeline
  writer's pure row building (``fast_rows.row_tuples`` with the SQLite encoders).

Prints CPU µs per AMI event (best and median of ``--repeat`` rounds) and a SHA-256 of every
timeline row and outbox row produced: a change that keeps behaviour keeps the digest.
Under callgrind, run two sizes and subtract to get instructions per AMI event without the
start-up (imports): ``(I(2N) - I(N)) / (15 N)``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crm_bridge.bus import BusSettings
from crm_bridge.bus.model import partition_for
from crm_bridge.bus.redis_bus import _RedisLog
from crm_bridge.calls.consumer import CustomerResolver, TimelineConsumer
from crm_bridge.calls.outbox import SqliteOutbox
from crm_bridge.calls.reader import AmiReader
from crm_bridge.calls.state import BridgeState, NormaliserConfig
from ivr_engine.telephony.ami import AmiConnectionLost, Subscription
from ivr_engine.telephony.ami.connection import DEFAULT_LIMITS, AmiConnection
from ivr_engine.timeline.fast_rows import EventRow, sqlite_event_rows
from tests.component.test_ami_fake_peer import Pairs, encode
from tests.component.test_call_bridge_fakes import Switch

AMI_PER_CALL = 15
NOW = datetime(2026, 11, 30, tzinfo=UTC)  # the rows' recorded_at: fixed, for the digest
STREAM, GROUP, CONSUMER = "calls", "timeline", "bench"


def workload(calls: int, concurrent: int) -> list[bytes]:
    """Each AMI message as Asterisk writes it, ``concurrent`` calls interleaved."""
    switch = Switch()
    per_call: list[list[Pairs]] = []
    for n in range(calls):
        switch.agent_call(f"+1555{4_000_000 + n % 300:07d}", talk_s=20, hold_s=2)
        per_call.append(switch.take())
    out: list[bytes] = []
    for start in range(0, calls, concurrent):
        group = per_call[start : start + concurrent]
        for step in range(max(len(events) for events in group)):
            out += [encode(events[step]) for events in group if step < len(events)]
    return out


class _Rows:
    """The outbox's SQL, kept instead of written."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.states: list[Any] = []

    def executemany(self, sql: str, rows: Iterable[Any]) -> None:
        if sql.startswith("INSERT INTO outbox"):
            self.events += rows
        else:
            self.states += [(sql[:6], *row) for row in rows]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """``SELECT last_insert_rowid()`` (the ids of an append), ``DELETE``: nothing."""
        return self

    def fetchone(self) -> tuple[int]:
        return (len(self.events),)


class MemoryOutbox(SqliteOutbox):
    """``SqliteOutbox.append`` as it is, its transaction run on ``_Rows``."""

    def __init__(self) -> None:
        self.rows = _Rows()
        super().__init__(self.rows, Path("memory"), -1, None)  # type: ignore[arg-type]

    async def _run(self, work: Callable[[Any], Any], *, write: bool = True) -> Any:
        return work(self.rows)


class FakeAmi:
    def __init__(self) -> None:
        self.subscription: Subscription | None = None

    def subscribe(self, *patterns: str, maxsize: int) -> Subscription:
        self.subscription = Subscription(patterns, maxsize=maxsize)
        return self.subscription


class FakeRedis:
    """What ``_RedisLog.read_new`` asks of redis-py: ``XREADGROUP`` gives a stored reply."""

    def __init__(self) -> None:
        self.reply: list[Any] = []

    def register_script(self, source: str) -> None:
        return None

    async def execute_command(self, *args: Any, **options: Any) -> list[Any]:
        return self.reply


class Directory:
    """Customers by phone, in memory: ids are deterministic (the digest covers them)."""

    def __init__(self) -> None:
        self.owners: dict[str, list[str]] = {}
        self.made = 0

    async def phone_owners(self, phones: Sequence[str]) -> dict[str, list[str]]:
        return {p: self.owners[p] for p in phones if p in self.owners}

    async def create_customers(self, phones: Sequence[str | None]) -> list[str]:
        ids = []
        for phone in phones:
            self.made += 1
            ids.append(f"c{self.made}")
            if phone is not None:
                self.owners[phone] = [ids[-1]]
        return ids


class RowWriter:
    """The timeline writer's pure part: every batch as the SQLite rows it would insert."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    async def write_rows(self, rows: Sequence[EventRow]) -> set[str]:
        owners = {r.customer_id: r.customer_id for r in rows}
        self.rows += sqlite_event_rows(rows, owners, NOW)
        return set()


class NoBus:
    async def ack(self, ids: Iterable[Any]) -> int:
        return 0


async def read_side(messages: list[bytes], chunk: int) -> list[tuple[str, str, str]]:
    """AMI bytes → outbox rows (event id, partition key, body)."""
    ami, outbox = FakeAmi(), MemoryOutbox()
    reader = AmiReader(ami, outbox, BridgeState(NormaliserConfig()), queue_size=10**7)  # type: ignore[arg-type]
    assert ami.subscription is not None
    stream = asyncio.StreamReader(limit=DEFAULT_LIMITS.max_line_bytes)
    conn = AmiConnection(
        stream, None, version="x", limits=DEFAULT_LIMITS, on_event=ami.subscription.offer
    )  # type: ignore[arg-type]
    serving = asyncio.create_task(conn.serve())
    reading = asyncio.create_task(reader.run())
    for start in range(0, len(messages), chunk):
        stream.feed_data(b"".join(messages[start : start + chunk]))
        for _ in range(4):  # serve reads and frames, the reader normalises and commits
            await asyncio.sleep(0)
    stream.feed_eof()
    with contextlib.suppress(AmiConnectionLost):
        await serving
    ami.subscription.end()
    await reading
    return outbox.rows.events


async def consume_side(rows: list[tuple[str, str, str]], batch: int) -> RowWriter:
    """Outbox rows → Redis-shaped deliveries → ``TimelineConsumer`` → timeline rows."""
    settings = BusSettings()
    redis = FakeRedis()
    log = _RedisLog(redis, settings, "ivr:bus:", 5.0)  # type: ignore[arg-type]
    writer = RowWriter()
    resolver = CustomerResolver(None, directory=Directory())  # type: ignore[arg-type]
    consumer = TimelineConsumer(NoBus(), STREAM, GROUP, CONSUMER, resolver, writer)  # type: ignore[arg-type]
    partitions = list(range(settings.partitions))
    entry = 0
    for start in range(0, len(rows), batch):
        by_key: dict[bytes, list[tuple[bytes, dict[bytes, bytes]]]] = {}
        for _, key, body in rows[start : start + batch]:
            entry += 1
            stream_key = log.key(STREAM, f"p{partition_for(key, settings.partitions)}").encode()
            by_key.setdefault(stream_key, []).append((b"%d-0" % entry, {b"e": body.encode()}))
        redis.reply = [[k, entries] for k, entries in by_key.items()]
        deliveries = await log.read_new(STREAM, GROUP, CONSUMER, partitions, batch, 200)
        await consumer._process(deliveries)
    return writer


async def one_round(messages: list[bytes], args: argparse.Namespace) -> tuple[float, str]:
    cpu = time.process_time()
    rows = await read_side(messages, args.chunk)
    writer = await consume_side(rows, args.batch)
    cpu = time.process_time() - cpu
    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr(row).encode())
    for timeline_row in writer.rows:
        digest.update(repr(timeline_row).encode())
    return cpu, f"{len(rows)} outbox rows, {len(writer.rows)} timeline rows, {digest.hexdigest()}"


async def main(args: argparse.Namespace) -> None:
    messages = workload(args.calls, args.concurrent)
    cpus = []
    for _ in range(args.repeat):
        cpu, digest = await one_round(messages, args)
        cpus.append(cpu / len(messages) * 1e6)
    print(digest)
    print(
        f"{len(messages)} AMI events: CPU µs per AMI event best {min(cpus):.1f}, "
        f"median {statistics.median(cpus):.1f} ({args.repeat} rounds)"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrent", type=int, default=1, help="calls live at once")
    parser.add_argument("--chunk", type=int, default=500, help="AMI messages per socket read")
    parser.add_argument("--batch", type=int, default=500, help="bus entries per read")
    parser.add_argument("--repeat", type=int, default=5)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
