"""Decision latency (issue #2): AGI header block sent -> first menu prompt (``EXEC "Read"``) seen.

    bench/run-decision-latency.sh                      # seed once, run, write bench/results.md
    .venv/bin/python bench/decision_latency.py --db postgresql --runs 1 100 100,hold=1000

Per database: seed it once with ``bench/seed_timeline.py`` (skipped when already seeded),
start the real engine as its own process (``ivr-engine run``, the real menus and prompts,
so client and server CPU do not mix in one event loop), then dial it like Asterisk 22:
connect, send the ``agi_*`` header block (clock starts), receive commands until the first
``EXEC "Read"`` (clock stops), then play the rest of the call (press 1, type 8 digits when
asked for a number) until the engine hangs up. Each ``--runs`` entry keeps C calls in
flight (see ``Scenario``); warm-up calls and the last C calls (the ramp-down) are not
measured. Callers: known phones ``phone_for(i)`` with the seed's skew (busy customers call
more), plus ``--unknown-share`` new numbers. After each run the engine's recorder is given
time to store every call (so the next run starts on an idle engine), and the engine-side
``decision_ms`` of each measured call is read back from its stored call event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import random
import shlex
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
from seed_timeline import SKEW, phone_for
from sqlalchemy.engine import make_url

from ivr_engine.checked_menus import load_checked_menus
from ivr_engine.identity import normalize_caller_id
from ivr_engine.personalize import decide_menu
from ivr_engine.settings import Settings
from ivr_engine.timeline import open_timeline
from tests.component.fake_asterisk import asterisk_env, header_block

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
READ_PREFIX = 'EXEC "Read"'
MSET_PREFIX = 'EXEC "MSet"'
CALL_TIMEOUT_S = 30.0
RECORDER_DRAIN_TIMEOUT_S = 600.0
SECTION = "## Decision latency"
DEFAULT_URLS = {
    "postgresql": "postgresql://postgres@127.0.0.1/ivr_bench",
    "sqlite": "sqlite:///bench/.work/decision-latency.db",
}
TARGET_P50_MS, TARGET_P99_MS = 1.0, 5.0
FLOOR_WARMUP = 100
FLOOR_RUNS = ((0, 0), (100, 0), (0, 1000))  # (gap ms, known-caller pool) per run
# The brief's runs (answers at once), then an idle engine between calls and callers who
# listen to the menu for a second (100 calls in flight the way a real switch has them),
# then known callers from a set small enough to stay cached.
DEFAULT_RUNS = [
    *("1", "100", "1,gap=100,calls=2000,warmup=200", "100,hold=1000"),
    *("1,pool=1000,warmup=3000", "100,hold=1000,pool=1000,warmup=3000"),
]


# --------------------------------------------------------------------------- seeding


async def _pg_state(url: str) -> tuple[int, int, bool] | None:
    """(customers, max event seq, indexes built) or None when the database is missing."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        if not await conn.fetchval("SELECT to_regclass('customers') IS NOT NULL"):
            return 0, 0, False
        return (
            await conn.fetchval("SELECT count(*) FROM customers"),
            await conn.fetchval("SELECT coalesce(max(seq), 0) FROM timeline_events"),
            await conn.fetchval(
                "SELECT to_regclass('ix_timeline_events_customer_recent') IS NOT NULL"
            ),
        )
    finally:
        await conn.close()


async def _pg_create(url: str) -> None:
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        await conn.execute(f'CREATE DATABASE "{parsed.database}"')
    finally:
        await conn.close()


def _sqlite_state(path: Path) -> tuple[int, int, bool] | None:
    if not path.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "customers" not in names:
            return 0, 0, False
        customers = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
        last_seq = conn.execute("SELECT coalesce(max(seq), 0) FROM timeline_events").fetchone()
        return customers, last_seq[0], "ix_timeline_events_customer_recent" in names


def sqlite_path(url: str) -> Path:
    return ROOT / url.removeprefix("sqlite:///")


async def ensure_seeded(url: str, customers: int, events: int) -> None:
    """Seed an empty database once; refuse a partly seeded one (say how to start over)."""
    is_pg = not url.startswith("sqlite")
    state = await _pg_state(url) if is_pg else _sqlite_state(sqlite_path(url))
    if state is not None and state[0] >= customers and state[1] >= events and state[2]:
        print(f"{url}: already seeded ({state[0]:,} customers, {state[1]:,} events)")
        return
    if state is not None and state[0] > 0:
        fix = f"DROP DATABASE {make_url(url).database}" if is_pg else f"rm {sqlite_path(url)}*"
        raise SystemExit(f"{url}: partly seeded or smaller than asked ({state}); {fix}")
    if is_pg and state is None:
        await _pg_create(url)
    if not is_pg:
        sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
    seed = [sys.executable, str(ROOT / "bench/seed_timeline.py"), "--url", url]
    sizes = ["--customers", str(customers), "--events", str(events)]
    print(f"seeding {url} ...", flush=True)
    await asyncio.to_thread(subprocess.run, [*seed, *sizes], cwd=ROOT, check=True)


# --------------------------------------------------------------------------- warm cache

PG_RELATIONS = """
    SELECT c.oid::regclass::text, pg_relation_size(c.oid) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i', 't')
    ORDER BY pg_relation_size(c.oid) DESC
"""


async def _pg_prewarm(url: str) -> str:
    """Read every table and index of the schema into the OS page cache (``pg_prewarm``
    ``'read'``): the issue's figures are for a warm cache, and a freshly seeded database
    larger than ``shared_buffers`` is otherwise read from disk by the first calls."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        except asyncpg.PostgresError as exc:
            return f"not prewarmed (pg_prewarm unavailable: {exc})"
        relations = await conn.fetch(PG_RELATIONS)
        for name, _ in relations:
            await conn.fetchval("SELECT pg_prewarm($1::regclass, 'read')", name)
        shared = await conn.fetchval("SHOW shared_buffers")
    finally:
        await conn.close()
    size = sum(row[1] for row in relations)
    return (
        f"{len(relations)} relations, {size / 2**30:.2f} GiB read into the OS page cache with"
        f" `pg_prewarm(..., 'read')` (shared_buffers {shared})"
    )


def _sqlite_prewarm(path: Path) -> str:
    """Read the SQLite file once so its pages are in the OS page cache."""
    size = 0
    with path.open("rb") as db:
        while chunk := db.read(1 << 20):
            size += len(chunk)
    return f"the {size / 2**30:.2f} GiB file read once into the OS page cache"


async def prewarm(url: str) -> str:
    """Warm the cache before measuring; a sentence saying what was read and how long it took."""
    started = time.perf_counter()
    if url.startswith("sqlite"):
        done = await asyncio.to_thread(_sqlite_prewarm, sqlite_path(url))
    else:
        done = await _pg_prewarm(url)
    return f"{done}, {time.perf_counter() - started:.0f} s"


# --------------------------------------------------------------------------- the engine


@dataclass
class EngineProcess:
    process: asyncio.subprocess.Process
    agi_port: int
    workers: int

    def cpu_s(self) -> float:
        """User + system CPU seconds so far of the engine process and its live children
        (the workers under ``--workers N``)."""
        root = self.process.pid
        ticks = 0
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if int(proc.name) == root or int(stat[1]) == root:  # stat[1]: the parent pid
                ticks += int(stat[11]) + int(stat[12])
        return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu_s() -> float:
    """User + system CPU seconds so far of the PostgreSQL server's live processes (its
    backends, the engine's connections among them; other clients' work too)."""
    ticks = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        ticks += int(stat[11]) + int(stat[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def client_cpu_s() -> float:
    """User + system CPU seconds of this process (the FastAGI client)."""
    times = os.times()
    return times.user + times.system


async def migrate(url: str) -> None:
    """``ivr-engine migrate`` (idempotent): the engine migrates SQLite at start but not
    PostgreSQL, so a database seeded by an older schema is brought up to date first."""
    command = [str(ROOT / ".venv/bin/ivr-engine"), "--database-url", url, "migrate"]
    await asyncio.to_thread(subprocess.run, command, cwd=ROOT, check=True)


@contextlib.asynccontextmanager
async def running_engine(
    url: str, log_path: Path, workers: int = 1
) -> AsyncIterator[EngineProcess]:
    """``ivr-engine run`` on ``url`` (repo's menus and prompts), ``--workers``; SIGTERM and
    wait on exit."""
    with tempfile.TemporaryDirectory(prefix="ivr-bench-") as tmp:
        ready = Path(tmp) / "ready"
        env = {**os.environ, "IVR_ENGINE_SPOOL_DIR": str(Path(tmp) / "spool")}
        command = [str(ROOT / ".venv/bin/ivr-engine"), "--database-url", url, "run"]
        command += ["--agi-port", "0", "--http-port", "0", "--ready-file", str(ready)]
        command += ["--workers", str(workers)] if workers != 1 else []  # older trees: no option
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                *command, cwd=ROOT, env=env, stdout=log, stderr=log
            )
        try:
            yield EngineProcess(process, await _wait_ready(process, ready, log_path), workers)
        finally:
            if process.returncode is None:
                process.terminate()
            await asyncio.wait_for(process.wait(), 30)


def _ready_text(ready: Path) -> str:
    return ready.read_text() if ready.exists() else ""


async def _wait_ready(process: asyncio.subprocess.Process, ready: Path, log: Path) -> int:
    async with asyncio.timeout(60):
        while not (text := await asyncio.to_thread(_ready_text, ready)).endswith("\n"):
            if process.returncode is not None:
                raise SystemExit(f"the engine exited ({process.returncode}); see {log}")
            await asyncio.sleep(0.05)
    return int(text.split()[0])


# --------------------------------------------------------------------------- callers


class CallerMix:
    """Known phones (customer index ``N * U**skew``, as the seed) and some unknown ones.

    ``pool``: known callers are drawn from a fixed set of that many (their rows stay cached
    once warmed up); unknown numbers are always new. 0: any customer.
    """

    def __init__(
        self, customers: int, unknown_share: float, rng: random.Random, pool: int = 0
    ) -> None:
        self.customers, self.unknown_share, self.rng = customers, unknown_share, rng
        self._pool = [self._known() for _ in range(pool)]

    @property
    def pool_size(self) -> int:
        return len(self._pool)

    def _known(self) -> int:
        return int(self.customers * self.rng.random() ** SKEW)

    def next(self) -> tuple[str, bool]:
        rand = self.rng.random
        if rand() < self.unknown_share:
            return f"+1777{self.rng.randrange(10**7):07d}", False
        phone = phone_for(self.rng.choice(self._pool) if self._pool else self._known())
        return (phone if rand() < 0.5 else phone[2:]), True  # E.164 or national digits


# --------------------------------------------------------------------------- the client


@dataclass
class CallTrace:
    number: int
    known: bool
    sent_ns: int = 0
    first_read_ns: int | None = None
    ended_ns: int = 0
    sent_real_ns: int = 0  # the same instant as sent_ns, on the kernel's clock (CLOCK_REALTIME)
    first_read_kernel_ns: int | None = None  # when the first Read's bytes reached our socket
    engine_first_prompt_ms: float | None = None  # the engine's own measure of this call
    variables: dict[str, str] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def latency_ms(self) -> float | None:
        if self.first_read_ns is None:
            return None
        return (self.first_read_ns - self.sent_ns) / 1e6

    @property
    def kernel_latency_ms(self) -> float | None:
        """Header sent -> the first Read's bytes in our socket's receive queue (the kernel's
        receive timestamp): this client's own event-loop delay is not in it."""
        if self.first_read_kernel_ns is None:
            return None
        return (self.first_read_kernel_ns - self.sent_real_ns) / 1e6


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not name it
TIMESTAMP_SPACE = socket.CMSG_SPACE(16)  # struct timespec


def kernel_receive_ns(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return int(seconds * 1_000_000_000 + nanoseconds)
    return None


class AgiCall:
    """Asterisk's side of one FastAGI call, on a non-blocking socket read with ``recvmsg``,
    so each read carries the kernel's receive timestamp (``SO_TIMESTAMPNS``) besides the
    time this process got to it.

    ``hold_s``: the caller answers each ``EXEC "Read"`` that long after it arrives (listening
    to the menu, then pressing a key), as Asterisk would; 0 answers at once.
    """

    def __init__(
        self,
        sock: socket.socket,
        trace: CallTrace,
        done: asyncio.Future[None],
        hold_s: float,
    ) -> None:
        self._sock, self.trace, self._done, self._hold_s = sock, trace, done, hold_s
        self._loop = asyncio.get_running_loop()
        self._buffer = b""
        self._max_digits = 1
        self._closed = False

    def start(self, header: bytes) -> None:
        self._loop.add_reader(self._sock.fileno(), self._readable)
        self.trace.sent_real_ns = time.time_ns()
        self.trace.sent_ns = time.perf_counter_ns()
        self._write(header)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self._sock.recvmsg(65536, TIMESTAMP_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary = b"", []
        now = time.perf_counter_ns()
        if not data:  # the engine hung up
            self.trace.ended_ns = now
            self.close()
            if not self._done.done():
                self._done.set_result(None)
            return
        self._buffer += data
        arrived = kernel_receive_ns(ancillary)
        while (end := self._buffer.find(b"\n")) >= 0:
            line = self._buffer[:end].decode()
            self._buffer = self._buffer[end + 1 :]
            if line.startswith(READ_PREFIX) and self.trace.first_read_ns is None:
                self.trace.first_read_ns = now
                self.trace.first_read_kernel_ns = arrived
            reply = self._answer(line)
            if line.startswith(READ_PREFIX) and self._hold_s > 0:
                self._loop.call_later(self._hold_s, self._write, reply)
            else:
                self._write(reply)

    def _write(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            sent = self._sock.send(data)
        except OSError:
            return  # the engine is gone; the read side sees it
        if sent < len(data):  # never seen with these short lines; be correct anyway
            self._loop.create_task(self._loop.sock_sendall(self._sock, data[sent:]))

    def _answer(self, line: str) -> bytes:
        if line.startswith(READ_PREFIX):
            self._max_digits = int(line.split(",")[2])  # IVR_READ,prompts,MAXDIGITS,...
            return b"200 result=0\n"
        if line.startswith(MSET_PREFIX):  # EXEC "MSet" "A=1,B=2": the routing variables
            words = shlex.split(line)
            for pair in filter(None, (words[2] if len(words) > 2 else "").split(",")):
                name, _, value = pair.partition("=")
                self.trace.variables[name] = value
            return b"200 result=0\n"
        if line.startswith("EXEC "):
            return b"200 result=0\n"
        if line.startswith("GET FULL VARIABLE"):
            digits = "1" if self._max_digits == 1 else "12345678"
            return f"200 result=1 ({digits}|OK)\n".encode()
        if line.startswith("GET DATA "):  # a sensitive field: the digits in the reply
            return f"200 result={'12345678'[: int(line.rsplit(' ', 1)[1])]}\n".encode()
        if line.startswith("SET VARIABLE "):
            name, _, value = line.removeprefix("SET VARIABLE ").partition(" ")
            self.trace.variables[name.strip('"')] = value.strip('"')
            return b"200 result=1\n"
        self.trace.unexpected.append(line)
        return b"510 Invalid or unknown command\n"


async def place_call(
    port: int, tag: str, number: int, caller: tuple[str, bool], hold_s: float
) -> CallTrace:
    loop = asyncio.get_running_loop()
    env = asterisk_env(HOST, port, "ivr?menu=main", caller_id=caller[0])
    env["agi_uniqueid"] = f"{tag}.{number}"
    trace, done = CallTrace(number, caller[1]), loop.create_future()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio's transports
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    call = AgiCall(sock, trace, done, hold_s)
    try:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await loop.sock_connect(sock, (HOST, port))
            call.start(header_block(env))
            await done
    except (OSError, TimeoutError) as exc:
        trace.error = repr(exc)
    finally:
        call.close()
    return trace


@contextlib.contextmanager
def kernel_timestamps() -> Iterator[None]:
    """Keep receive timestamping switched on for the whole run: the kernel turns it on
    lazily (a deferred static key), so a call's first socket could miss its stamps."""
    keeper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    keeper.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:
        time.sleep(0.1)
        yield
    finally:
        keeper.close()


# --------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Scenario:
    """``C[,hold=MS][,jitter=PCT][,gap=MS][,pool=N][,calls=N][,warmup=N]``: C calls in
    flight. ``jitter``: each hold is drawn uniformly from hold ± PCT percent and each slot starts
    after a random part of one hold, so calls arrive spread out rather than in step (with a
    fixed hold the C slots stay in lockstep: C calls arrive within a few ms, once a hold)."""

    concurrency: int
    calls: int
    warmup: int
    hold_ms: int = 0  # the caller answers each EXEC Read after this long
    jitter: int = 0  # hold drawn from hold_ms ± jitter %; slots start staggered
    gap_ms: int = 0  # each slot pauses this long before placing its next call
    pool: int = 0  # known callers drawn from this many customers (0: any)

    @classmethod
    def parse(cls, text: str, calls: int, warmup: int) -> Scenario:
        head, *options = text.split(",")
        values = {"calls": calls, "warmup": warmup}
        for option in options:
            key, _, value = option.partition("=")
            if (
                key not in {"calls", "warmup", "hold", "jitter", "gap", "pool"}
                or not value.isdigit()
            ):
                raise argparse.ArgumentTypeError(f"bad run {text!r}: {option!r}")
            values[f"{key}_ms" if key in {"hold", "gap"} else key] = int(value)
        return cls(int(head), **values)

    @property
    def pacing(self) -> str:
        hold = f"hold {self.hold_ms} ms" if self.hold_ms else ""
        if hold and self.jitter:
            hold += f" ± {self.jitter} %, staggered"
        parts = [hold, f"gap {self.gap_ms} ms"]
        return ", ".join(p for p in parts if p and p != "gap 0 ms") or "instant"

    @property
    def callers(self) -> str:
        return f"pool of {self.pool:,}" if self.pool else "any"


@dataclass
class LoadResult:
    database: str
    scenario: Scenario
    traces: list[CallTrace]
    window_s: float
    engine_cpu_s: float
    machine_busy: float  # all cores, other work included
    load_avg: float
    tag: str
    workers: int
    decision_ms: list[float] = field(default_factory=list)
    first_prompt_ms: list[float] = field(default_factory=list)  # engine: request in -> Read out
    drain_s: float | None = None  # until the engine had stored every call of the run
    postgres_cpu_s: float | None = None  # the server's processes (PostgreSQL runs only)
    client_cpu_s: float = 0.0  # this process: the FastAGI client


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


async def run_load(
    engine: EngineProcess, database: str, mix: CallerMix, scenario: Scenario
) -> LoadResult:
    """Keep ``concurrency`` calls in flight; measure calls ``warmup .. warmup + calls``."""
    concurrency, warmup, calls = scenario.concurrency, scenario.warmup, scenario.calls
    tag = f"dl{time.time_ns() // 1_000_000}c{concurrency}"
    total = warmup + calls + concurrency - 1
    numbers = iter(range(total))
    measured: list[CallTrace] = []
    marks: dict[str, float] = {}

    def hold_s() -> float:
        if not scenario.jitter:  # no draw: a given --seed places the same callers as before
            return scenario.hold_ms / 1000
        spread = scenario.jitter / 100
        return scenario.hold_ms / 1000 * mix.rng.uniform(1 - spread, 1 + spread)

    async def caller() -> None:
        if scenario.jitter:
            await asyncio.sleep(mix.rng.uniform(0, scenario.hold_ms / 1000))
        for n in numbers:
            if n == warmup:
                marks["cpu"], marks["start"] = engine.cpu_s(), time.perf_counter()
                marks["busy"], marks["total"] = _cpu_times()
                marks["pg"], marks["client"] = postgres_cpu_s(), client_cpu_s()
            trace = await place_call(engine.agi_port, tag, n, mix.next(), hold_s())
            if warmup <= n < warmup + calls:
                measured.append(trace)
                if len(measured) == calls:
                    marks["end"], marks["cpu_end"] = time.perf_counter(), engine.cpu_s()
                    marks["busy_end"], marks["total_end"] = _cpu_times()
                    marks["pg_end"], marks["client_end"] = postgres_cpu_s(), client_cpu_s()
            if scenario.gap_ms:
                await asyncio.sleep(scenario.gap_ms / 1000)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(caller())
    busy = (marks["busy_end"] - marks["busy"]) / (marks["total_end"] - marks["total"])
    result = LoadResult(
        database, scenario, measured, marks["end"] - marks["start"],
        marks["cpu_end"] - marks["cpu"], busy, os.getloadavg()[0], tag, engine.workers,
    )  # fmt: skip
    if database == "postgresql":
        result.postgres_cpu_s = marks["pg_end"] - marks["pg"]
    result.client_cpu_s = marks["client_end"] - marks["client"]
    return result


EngineTimes = tuple[float | None, float | None]  # (decision_ms, first_prompt_ms)


async def stored_decisions(url: str, after_seq: int, tag: str) -> dict[str, EngineTimes]:
    """Call id -> engine-side ``decision_ms`` and ``first_prompt_ms`` (request in -> first
    prompt command out) of the call events the engine has stored."""
    sql = "SELECT event_id, {}, {} FROM timeline_events WHERE seq > {} AND event_id LIKE {}"
    if url.startswith("sqlite"):
        values = [f"json_extract(data, '$.{name}')" for name in ENGINE_TIMES]
        query = sql.format(*values, "?", "?")
        rows = await asyncio.to_thread(_sqlite_rows, sqlite_path(url), query, after_seq, tag)
    else:
        conn = await asyncpg.connect(url)
        try:
            values = [f"(data->>'{name}')::float" for name in ENGINE_TIMES]
            query = sql.format(*values, "$1", "$2")
            rows = await conn.fetch(query, after_seq, f"voice:{tag}.%")
        finally:
            await conn.close()
    return {_call_id(str(r[0])): (_float(r[1]), _float(r[2])) for r in rows}


def _call_id(event_id: str) -> str:
    """The uniqueid in ``voice:<uniqueid>~<nonce>:ivr`` (older trees: no ``~<nonce>``)."""
    return event_id.split(":")[1].split("~")[0]


ENGINE_TIMES = ("decision_ms", "first_prompt_ms")


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _sqlite_rows(path: Path, query: str, after_seq: int, tag: str) -> list[Any]:
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        return conn.execute(query, (after_seq, f"voice:{tag}.%")).fetchall()


async def await_recorder(url: str, after_seq: int, result: LoadResult, placed: int) -> None:
    """Wait (bounded) until the engine has stored every call of the run, so the next run
    starts on an idle engine; note how long that took and each measured ``decision_ms``."""
    started = time.perf_counter()
    while True:
        stored = await stored_decisions(url, after_seq, result.tag)
        waited = time.perf_counter() - started
        if len(stored) >= placed:
            result.drain_s = waited
            break
        if waited > RECORDER_DRAIN_TIMEOUT_S:
            print(f"the engine stored {len(stored)} of {placed} calls; not waiting longer")
            break
        await asyncio.sleep(1.0)
    for trace in result.traces:
        decision, first_prompt = stored.get(f"{result.tag}.{trace.number}", (None, None))
        trace.engine_first_prompt_ms = first_prompt
        if decision is not None:
            result.decision_ms.append(decision)
        if first_prompt is not None:
            result.first_prompt_ms.append(first_prompt)


async def last_event_seq(url: str) -> int:
    state = (
        await _pg_state(url) if not url.startswith("sqlite") else _sqlite_state(sqlite_path(url))
    )
    return state[1] if state else 0


# --------------------------------------------------------------------------- floor


async def decision_floor(url: str, mix: CallerMix, lookups: int, gap_ms: int) -> dict[str, str]:
    """The engine's decision step alone, in this process (no AGI, no engine process): the
    same ``FastCallerLookup`` + ``decide_menu`` the flow runs, one caller at a time."""
    settings = Settings(
        database_url=url, menus_dir=ROOT / "config/menus", sounds_dir=ROOT / "prompts/en"
    )
    menu = load_checked_menus(settings)["main"]
    timeline = await open_timeline(url, migrate=False)
    looked: list[float] = []
    decided: list[float] = []
    try:
        warmup = FLOOR_WARMUP + 2 * mix.pool_size
        for n in range(warmup + lookups):
            phone = normalize_caller_id(mix.next()[0]) or ""
            started = time.perf_counter()
            result = await timeline.lookup.lookup(
                "phone", phone, max_events=menu.ranking.max_events
            )
            between = time.perf_counter()
            decide_menu(menu, result.history, datetime.now(UTC))
            if n >= warmup:
                looked.append((between - started) * 1000)
                decided.append((time.perf_counter() - between) * 1000)
            if gap_ms:
                await asyncio.sleep(gap_ms / 1000)
    finally:
        await timeline.close()
    return {
        "database": url.split(":", 1)[0],
        "pacing": f"gap {gap_ms} ms" if gap_ms else "back to back",
        "known callers": f"pool of {mix.pool_size:,}" if mix.pool_size else "any",
        "lookups": f"{lookups:,}",
        "lookup p50 / p99 ms": _p50_p99(looked),
        "decide_menu p50 / p99 ms": _p50_p99(decided),
        "sum of p50s ms": f"{percentile(sorted(looked), 50) + percentile(sorted(decided), 50):.2f}",
    }


# --------------------------------------------------------------------------- report


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return float("nan")
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def _p50_p99(values: Sequence[float]) -> str:
    ordered = sorted(values)
    return f"{percentile(ordered, 50):.2f} / {percentile(ordered, 99):.2f}" if ordered else "n/a"


def summarize(result: LoadResult) -> dict[str, str]:
    ok = [t for t in result.traces if t.error is None and t.latency_ms is not None]
    latencies = sorted(t.latency_ms for t in ok if t.latency_ms is not None)
    known = [t for t in ok if t.known]
    personalised = sum(t.variables.get("IVR_DECISION") == "personalised" for t in known)
    failed = sum(
        t.error is not None or t.latency_ms is None or t.variables.get("IVR_OUTCOME") != "routed"
        for t in result.traces
    )
    calls = len(result.traces)
    target = latencies and percentile(latencies, 50) <= TARGET_P50_MS
    target = target and percentile(latencies, 99) <= TARGET_P99_MS
    return {
        "database": result.database,
        "engine workers": str(result.workers),
        "in flight": str(result.scenario.concurrency),
        "caller pacing": result.scenario.pacing,
        "known callers": result.scenario.callers,
        "calls": f"{calls:,}",
        **{f"p{p} ms": f"{percentile(latencies, p):.2f}" for p in (50, 90, 99)},
        "max ms": f"{latencies[-1]:.2f}" if latencies else "n/a",
        "socket arrival p50 / p99 ms": _p50_p99(
            [t.kernel_latency_ms for t in ok if t.kernel_latency_ms is not None]
        ),
        "calls/s": f"{calls / result.window_s:,.0f}",
        "known p50 / p99": _p50_p99([t.latency_ms for t in known if t.latency_ms is not None]),
        "unknown p50 / p99": _p50_p99(
            [t.latency_ms for t in ok if not t.known and t.latency_ms is not None]
        ),
        "engine decision_ms p50 / p99": _p50_p99(result.decision_ms),
        "engine request in -> Read out p50 / p99 ms": _p50_p99(result.first_prompt_ms),
        "engine CPU ms/call": f"{result.engine_cpu_s * 1000 / calls:.2f}",
        "PostgreSQL CPU ms/call": _per_call(result.postgres_cpu_s, calls),
        "client CPU ms/call": _per_call(result.client_cpu_s, calls),
        "machine CPU busy": f"{result.machine_busy:.0%}",
        "load avg": f"{result.load_avg:.1f}",
        "personalised (known)": f"{personalised / len(known):.0%}" if known else "n/a",
        "failed": str(failed),
        "recorder caught up (s)": f"{result.drain_s:.0f}" if result.drain_s is not None else "no",
        "target met": "yes" if target else "no",
    }


def _per_call(cpu_s: float | None, calls: int) -> str:
    return "n/a" if cpu_s is None or not calls else f"{cpu_s * 1000 / calls:.2f}"


def markdown_table(rows: Sequence[dict[str, str]]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(row[k] for k in head) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?"
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{os.cpu_count()} CPUs ({model}), {mem_kb / 2**20:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


async def postgres_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def _floor_text(floors: Sequence[dict[str, str]]) -> str:
    if not floors:
        return ""
    return f"""The decision step alone, for comparison: the same `FastCallerLookup` + `decide_menu`
the call flow runs, called in the benchmark process with no AGI and no engine process, one
caller at a time (same caller mix; {FLOOR_WARMUP} warm-up lookups, plus twice the pool),
right after the engine runs on that database:

{markdown_table(floors)}

"""


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this benchmark's own ``## Decision latency`` section."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(SECTION + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    path.write_text(text, encoding="utf-8")


def render_section(
    rows: Sequence[dict[str, str]],
    floors: Sequence[dict[str, str]],
    args: argparse.Namespace,
    notes: str,
) -> str:
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["bench/run-decision-latency.sh", *sys.argv[1:]])
    warmups = ", ".join(
        f"{run.concurrency} {run.pacing} {run.callers}: {run.warmup:,}" for run in args.runs
    )
    return f"""{SECTION}

Issue #2: time from the FastAGI client sending the AGI header block to receiving the engine's
first menu prompt command (`EXEC "Read"`). Targets on PostgreSQL: p50 ≤ {TARGET_P50_MS:g} ms,
p99 ≤ {TARGET_P99_MS:g} ms ("target met" applies the same bar to every row). Run {started}.

{markdown_table(rows)}

{_floor_text(floors)}**Machine.** {machine()}. Other work was running on the machine at the
same time: see the "machine CPU busy" (all cores, over the measured window, benchmark
included) and "load avg" columns.

**Data.** {notes}

**How measured.** `bench/decision_latency.py` seeds each database once with
`bench/seed_timeline.py` ({args.customers:,} customers, {args.events:,} events; skipped when
already seeded), reads every table and index into the OS page cache (`pg_prewarm`; the
SQLite file read once; `--no-prewarm` skips it), starts the real engine as a separate
process (`ivr-engine run`, the repo's `config/menus` and `prompts/en`, default settings, a
temporary spool directory), and dials it
from a second process with an asyncio FastAGI client that speaks like Asterisk 22 (the header
block of `tests/component/fake_asterisk.py`). Per call: connect, then the clock starts when the
header block is written and stops when the first line starting with `EXEC "Read"` arrives (TCP
connect not included; client-side timestamps, so client event-loop delay is included; "socket
arrival" stops the clock instead at the kernel's receive timestamp of those bytes on the
client's socket, `SO_TIMESTAMPNS`, which leaves this client's own event-loop delay out). The
client then plays the rest of the call (`200 result=0` to EXEC, presses 1, types 8 digits when
asked for a number, `200 result=1` to SET VARIABLE; the routing variables are read from the
engine's `EXEC "MSet"` or SET VARIABLE) until the engine hangs up; "failed" counts
calls that did not end with `IVR_OUTCOME=routed`. Caller pacing: "instant" answers every
command at once, so each slot places calls back to back (the brief's stress runs: 100 in
flight means well over 100 new calls a second); "gap N ms": each slot waits N ms between its
calls, so the engine is idle when a call arrives (1 call in flight, as a quiet switch has
it); "hold N ms": the caller answers each `EXEC "Read"` N ms later (listening to the menu,
then pressing a key), so 100 calls stay in flight the way a busy switch has them. Callers:
{1 - args.unknown_share:.0%} known phones (`phone_for(i)`, customer index `N * U**{SKEW}` like
the seed: busy customers call more; half sent as E.164, half as national digits) and
{args.unknown_share:.0%} unknown numbers (new each run; the engine creates them as customers
when it records the call). "Known callers": "any" draws from all the customers (a random
customer's rows are mostly not in memory, as with a large customer base); "pool of N" draws
from a fixed N customers, whose rows stay cached after the warm-up. Warm-up calls
({warmups}) and the ramp-down are not measured.
"Recorder caught up" is how long after the run the engine had stored every call (it writes
calls in the background, in batches, through its raw-driver call writer); the next run waits
for it. "Engine decision_ms" is the engine's own identify + history + decide time, read back
from the stored call events; "engine request in -> Read out" is the issue's measure taken
inside the engine (from the header block being in to the first prompt command being sent,
`first_prompt_ms` of the stored call event): the client-side p50/p99 add the client's own
event-loop delay and both sockets' wake-ups on a shared 2-core VM. "Engine workers" is
`ivr-engine run --workers N` (1: one process, no supervisor). "Engine CPU ms/call" is the
engine's processes only (the supervisor and its workers; PostgreSQL's own CPU is not in
it); "PostgreSQL CPU ms/call" is the server's live processes over the same window (any other
client of that server included), "client CPU ms/call" the benchmark's own process. Raw numbers:
`bench/.work/decision-latency-*.json`.

Reproduce (from the repo root; PostgreSQL on 127.0.0.1:5432, user postgres, trust auth):

```
{command}
```
"""


# --------------------------------------------------------------------------- main


@dataclass
class DatabaseRun:
    results: list[LoadResult]
    floors: list[dict[str, str]]
    code: str  # the engine sources it ran
    warm: str  # what was read into the cache before the runs


def engine_code() -> str:
    """HEAD, whether ``ivr_engine/`` has uncommitted changes, and a digest of its sources."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "ivr_engine").rglob("*.py")):
        digest.update(path.read_bytes())
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "ivr_engine"], capture_output=True)
    changes = " + uncommitted changes" if dirty.stdout.strip() else ""
    return f"{head.stdout.strip()}{changes} (ivr_engine/**/*.py sha256 {digest.hexdigest()[:12]})"


async def bench_database(name: str, url: str, args: argparse.Namespace) -> DatabaseRun:
    if not args.skip_seed:
        await ensure_seeded(url, args.customers, args.events)
    await migrate(url)
    warm = "not prewarmed (--no-prewarm)"
    if args.prewarm:
        print(f"{name}: prewarming ...", flush=True)
        warm = await prewarm(url)
        print(f"{name}: {warm}", flush=True)
    after_seq = await last_event_seq(url)
    rng = random.Random(args.seed)
    log_path = ROOT / f"bench/.work/decision-latency-engine-{name}.log"
    results = []
    code = await asyncio.to_thread(engine_code)
    with kernel_timestamps():
        async with running_engine(url, log_path, args.workers) as engine:
            for scenario in args.runs:
                print(f"{name}: {scenario} ...", flush=True)
                mix = CallerMix(args.customers, args.unknown_share, rng, scenario.pool)
                result = await run_load(engine, name, mix, scenario)
                placed = scenario.warmup + scenario.calls + scenario.concurrency - 1
                await await_recorder(url, after_seq, result, placed)
                results.append(result)
    if (code_after := await asyncio.to_thread(engine_code)) != code:
        code += f", changed on disk during the run to {code_after}"
    floors = []
    for gap_ms, pool in FLOOR_RUNS if args.floor else ():
        print(f"{name}: decision step alone, gap {gap_ms} ms, pool {pool} ...", flush=True)
        floor_mix = CallerMix(args.customers, args.unknown_share, rng, pool)
        floors.append(await decision_floor(url, floor_mix, args.floor, gap_ms))
    return DatabaseRun(results, floors, f"{name}: {code}", f"{name}: {warm}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db", nargs="+", choices=sorted(DEFAULT_URLS), default=["postgresql", "sqlite"]
    )
    parser.add_argument("--pg-url", default=DEFAULT_URLS["postgresql"])
    parser.add_argument("--sqlite-url", default=DEFAULT_URLS["sqlite"])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--skip-seed", action="store_true", help="use the databases as they are")
    parser.add_argument(
        "--no-prewarm",
        dest="prewarm",
        action="store_false",
        help="measure without reading the tables and indexes into the OS page cache first",
    )
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help=Scenario.__doc__)
    parser.add_argument("--warmup", type=int, default=1000, help="unmeasured calls first")
    parser.add_argument("--calls", type=int, default=5000, help="measured calls per run")
    parser.add_argument("--unknown-share", type=float, default=0.1)
    parser.add_argument(
        "--floor", type=int, default=1000, help="lookups for the decision-step-alone runs (0: none)"
    )
    parser.add_argument("--seed", type=int, default=None, help="caller choice (default: random)")
    parser.add_argument("--results", type=Path, default=ROOT / "bench/results.md")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch results")
    parser.add_argument(
        "--workers", type=int, default=1, help="ivr-engine run --workers N (engine CPU: all)"
    )
    return parser


async def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    args.runs = [Scenario.parse(run, args.calls, args.warmup) for run in args.runs]
    urls = {"postgresql": args.pg_url, "sqlite": args.sqlite_url}
    runs = [await bench_database(name, urls[name], args) for name in args.db]
    results = [result for run in runs for result in run.results]
    floors = [floor for run in runs for floor in run.floors]
    rows = [summarize(r) for r in results]
    print(markdown_table(rows))
    if floors:
        print(markdown_table(floors))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    raw = [
        {
            **row,
            "latencies_ms": [t.latency_ms for t in r.traces],
            "socket_arrival_ms": [t.kernel_latency_ms for t in r.traces],
            "engine_first_prompt_ms": [t.engine_first_prompt_ms for t in r.traces],
            "sent_ms": [t.sent_ns / 1e6 for t in r.traces],  # header block out, client clock
        }
        for row, r in zip(rows, results, strict=True)
    ]
    (ROOT / f"bench/.work/decision-latency-{stamp}.json").write_text(json.dumps(raw))
    if not args.no_write:
        notes = await data_notes(args, urls)
        notes += " Cache before the runs: " + "; ".join(run.warm for run in runs) + "."
        notes += " Engine code: " + "; ".join(run.code for run in runs) + "."
        write_section(args.results, render_section(rows, floors, args, notes))
        print(f"wrote the '{SECTION}' section of {args.results}")


async def data_notes(args: argparse.Namespace, urls: dict[str, str]) -> str:
    parts = []
    for name in args.db:
        url = urls[name]
        state = await _pg_state(url) if name == "postgresql" else _sqlite_state(sqlite_path(url))
        version = f"PostgreSQL {await postgres_version(url)}" if name == "postgresql" else "SQLite"
        customers, events = state[:2] if state else (0, 0)
        parts.append(f"{version} `{url}`: {customers:,} customers, {events:,} events (last seq)")
    return "; ".join(parts) + "."


if __name__ == "__main__":
    asyncio.run(main())
