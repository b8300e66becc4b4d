"""Throughput and lag of the call-event bridge: AMI → normalise → outbox → bus → timeline.

    .venv/bin/python bench/bridge_throughput.py
    .venv/bin/python bench/bridge_throughput.py --calls 4000 --rates 0,1000 --syncs full,normal \
        --pg-admin-url postgresql://postgres@127.0.0.1:5432/test

A fake Asterisk (the component tests' ``FakeAmi`` + call ``Switch``) runs in a CHILD process
and, once the bridge has logged in over TCP and asked for its first channel list, sends
``--calls`` agent calls (15 AMI events each: Newchannel, Newstate, IvrRouted, IvrAgentDial,
the agent leg's Newchannel, DialBegin/End, two BridgeEnter, Hold, Unhold, BridgeLeave and
Hangup twice → 7 timeline events) at ``--rate`` AMI events/s (0: as fast as it can), each
stamped with its wall-clock send time in ``Timestamp``. Callers: ``--callers`` customers
seeded beforehand (not timed), every ``--new-every``-th call from a number never seen (the
bridge creates that customer). ``--concurrent N`` interleaves the events of N calls at a
time (default 1: each call's 15 events back to back), so a group commit touches N live calls
and saves each one's state, as on a real switch where calls overlap. ``--noise N`` adds N
events per call that the bridge does not read (``DeviceStateChange``); the fake, like
Asterisk, does not send them once the bridge's server-side filter is in place (variant
``unfiltered``: the bridge asks for no filter and reads them all). The per-AMI-event
columns divide by the 15 events of a call the bridge reads.

Topologies: ``one`` = reader and consumer in this process (one event loop); ``split`` = the
reader as its own process (``python -m crm_bridge.calls --roles reader``), the consumer here.
Pipeline: reader (group commit into the SQLite outbox, ``--syncs`` fsync policy) → publisher
(10 ms windows) → Redis Streams (real, 127.0.0.1:6379) → consumer group → customer by phone
→ FastCallWriter → timeline (SQLite file; PostgreSQL with ``--pg-admin-url``).

``--variants``: each run is repeated per variant, so an optimisation and what it replaced
are measured side by side on the same machine in one invocation (``new`` = the code as it
is; the others put back one older path, see ``VARIANTS``).

Per run: timeline events/s from the first AMI send to the last commit (whole run, including
the tail), and each event's lag from its AMI send to its commit + ack, p50/p99/max; CPU
of the bridge process(es), of the Redis server (``INFO cpu``) and, for a PostgreSQL
timeline, of every ``postgres`` process (/proc: other clients of that server count too),
per AMI event and as cores busy over the run. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import redis.asyncio

from crm_bridge.bus import DEFAULT_PREFIX, RedisEventBus
from crm_bridge.calls import Bridge, BridgeSettings, CustomerResolver, NormalisedEvent
from crm_bridge.calls.normalise import ASTERISK_EVENT_NAMES
from ivr_engine.heap import BRIDGE_YOUNG_THRESHOLD, settle_heap
from ivr_engine.ports import Identity
from ivr_engine.timeline import open_timeline
from ivr_engine.timeline.migrate import upgrade
from tests.component.test_ami_fake_peer import FakeAmi, Pairs, PeerSession, encode
from tests.component.test_bus_contract import delete_prefix
from tests.component.test_call_bridge_fakes import FakeAsterisk

REPO = Path(__file__).resolve().parents[1]
EVENTS_PER_CALL = 7  # timeline events of one agent call with a hold
AMI_PER_CALL = 15


def per_call_resolve(bridge: Bridge) -> None:
    """Customers resolved one lookup per new call, new ones created one by one."""
    assert bridge.consumer is not None and bridge.timeline is not None
    timeline = bridge.timeline
    bridge.consumer.resolver = CustomerResolver(timeline.store, lookup=timeline.lookup)


def json_publish(bridge: Bridge) -> None:
    """Outbox rows decoded and encoded again, sent as one pipelined XADD per event (the
    reader's side: in this process only with ``--topologies one``)."""
    if bridge.publisher is not None:
        bridge.publisher.pass_through = False
    if isinstance(bridge.bus, RedisEventBus):
        bridge.bus.append_script = False


def gc_tuned(bridge: Bridge) -> None:
    """What the bridge's own process does once started (``run_bridge(tune_gc=True)``)."""
    settle_heap(BRIDGE_YOUNG_THRESHOLD)


def default_gc() -> None:
    """Undo ``gc_tuned`` before each run: the runs share this process."""
    gc.unfreeze()
    gc.set_threshold(*DEFAULT_GC_THRESHOLD)


def no_linger(bridge: Bridge) -> None:
    """``gc-tuned`` with the consumer reading again at once after each batch (before
    ``consume_linger_ms``)."""
    gc_tuned(bridge)
    if bridge.consumer is not None:
        bridge.consumer.linger_s = 0.0


DEFAULT_GC_THRESHOLD = gc.get_threshold()
VARIANTS: dict[str, Callable[[Bridge], None]] = {
    "new": lambda bridge: None,
    "gc-tuned": gc_tuned,
    "per-call-resolve": per_call_resolve,
    "json-publish": json_publish,
    "unfiltered": gc_tuned,  # and no server-side AMI event filter (``one`` topology only)
    "no-linger": no_linger,
}


@dataclass(frozen=True)
class Run:
    variant: str
    database: str  # sqlite | postgresql
    sync: str  # outbox fsync policy
    rate: int  # offered AMI events/s, 0 = as fast as possible
    split: bool  # reader in its own process (else reader + consumer in one)


@dataclass(frozen=True)
class Row:
    run: Run
    calls: int
    events: int
    per_s: float
    ami_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_s: float  # bridge processes (reader + consumer), all threads
    redis_cpu_s: float  # the Redis server, from INFO cpu
    pg_cpu_s: float  # every PostgreSQL server process, from /proc (0 for a SQLite timeline)


# --- the child: a fake Asterisk that sends the workload ------------------------------------


def caller_of(n: int, callers: int, new_every: int) -> str:
    """Every ``new_every``-th call from a number never seen, the others from the
    ``callers`` seeded (known) customers in turn."""
    if new_every and n % new_every == new_every - 1:
        return f"+1555{5_000_000 + n:07d}"
    return known_caller(n % callers)


def known_caller(k: int) -> str:
    return f"+1555{4_000_000 + k:07d}"


def interleaved(per_call: list[list[Pairs]], concurrent: int) -> list[Pairs]:
    """Calls in groups of ``concurrent``, their events taken in turn (each call's own order
    kept), so ``concurrent`` calls are live at once as on a real switch."""
    out: list[Pairs] = []
    for start in range(0, len(per_call), concurrent):
        group = per_call[start : start + concurrent]
        for step in range(max(len(events) for events in group)):
            out += [events[step] for events in group if step < len(events)]
    return out


def with_noise(events: list[Pairs], noise: int, n: int) -> list[Pairs]:
    """A call's events with ``noise`` events the bridge does not read spread among them
    (``DeviceStateChange`` of an agent's device, as a PBX sends for every state change)."""
    out = list(events)
    for k in range(noise):
        state = ("RINGING", "INUSE", "NOT_INUSE")[k % 3]
        pairs = [
            ("Event", "DeviceStateChange"),
            ("Privilege", "call,all"),
            ("Timestamp", "0"),
            ("Device", f"PJSIP/agent{n % 50}"),
            ("State", state),
        ]
        out.insert((k + 1) * len(out) // (noise + 1), pairs)
    return out


async def filter_installed(session: PeerSession) -> None:
    """Until the bridge's server-side filter is in place (one Filter per event it reads)."""
    async with asyncio.timeout(30):
        while len(session.event_names or ()) < len(ASTERISK_EVENT_NAMES):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def serve_peer(args: argparse.Namespace) -> None:
    calls, rate = args.calls, args.rate
    peer = FakeAmi()
    await peer.start()
    fake = FakeAsterisk(peer)
    print(json.dumps({"port": peer.port}), flush=True)
    session = await peer.next_login()
    await session.next_action("CoreShowChannels")  # the bridge's first resync
    if args.expect_filter:
        await filter_installed(session)
    per_call = []
    for n in range(calls):
        fake.switch.agent_call(caller_of(n, args.callers, args.new_every), talk_s=20, hold_s=2)
        per_call.append(with_noise(fake.switch.take(), args.noise, n))
    messages = interleaved(per_call, args.concurrent)
    started = time.time()
    sent = 0
    chunk = max(1, rate // 100) if rate else 500
    for index in range(0, len(messages), chunk):
        if rate:
            await asyncio.sleep(max(0.0, started + index / rate - time.time()))
        now = f"{time.time():.6f}"
        kept = [p for p in messages[index : index + chunk] if not session.filtered_out(p)]
        data = b"".join(
            encode([(k, now if k == "Timestamp" else v) for k, v in pairs]) for pairs in kept
        )  # only what Asterisk would send past the bridge's filter
        sent += len(kept)
        await session.send(data)
    print(json.dumps({"sent": sent, "first": started, "last": time.time()}), flush=True)
    await asyncio.sleep(3600)  # the parent kills this process


# --- the parent: the bridge, measured ------------------------------------------------------


@contextlib.asynccontextmanager
async def peer_process(
    args: argparse.Namespace, rate: int, expect_filter: bool
) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve-peer", "--calls", str(args.calls),
        "--callers", str(args.callers), "--new-every", str(args.new_every),
        "--rate", str(rate), "--concurrent", str(args.concurrent), "--noise", str(args.noise),
        *(["--expect-filter"] if expect_filter else []), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(json.loads(await proc.stdout.readline())["port"])
        yield port, proc
    finally:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def database(kind: str, admin_url: str | None, tmp: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / f'timeline-{uuid.uuid4().hex[:6]}.db'}"
        await upgrade(url)
        yield url
        return
    assert admin_url is not None
    name = f"bench_bridge_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        await upgrade(url)
        yield url
    finally:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def seed(url: str, callers: int) -> None:
    timeline = await open_timeline(url)
    try:
        for k in range(callers):
            await timeline.store.create_customer(None, [Identity("phone", known_caller(k))])
    finally:
        await timeline.close()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_s() -> float:
    """User + system CPU seconds of every process named ``postgres`` (the server and its
    backends), plus what its exited children left in their parent's ``cutime``/``cstime``:
    deltas of this cover the backends that came and went during a run. Other clients of
    the same server count too, so measure on a quiet machine."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            head, _, rest = stat.read_text().rpartition(")")
            if head.endswith("(postgres"):
                fields = rest.split()
                total += sum(int(f) for f in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


async def redis_cpu_s(url: str) -> float:
    client = redis.asyncio.Redis.from_url(url)
    try:
        info = await client.info("cpu")
    finally:
        await client.aclose()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@contextlib.asynccontextmanager
async def reader_process(settings: BridgeSettings) -> AsyncIterator[list[float]]:
    """The reader role in its own OS process (``python -m crm_bridge.calls``)."""
    assert settings.ami_url is not None and settings.bus_url is not None
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crm_bridge.calls", "--roles", "reader",
        "--ami-url", settings.ami_url, "--bus-url", settings.bus_url,
        "--outbox", str(settings.outbox_path), "--outbox-sync", settings.outbox_sync,
        "--stream", settings.stream, "--log-level", "WARNING", cwd=REPO,
    )  # fmt: skip
    cpu = [0.0]  # filled in just before the process is stopped
    try:
        yield cpu
    finally:
        with contextlib.suppress(OSError, ValueError):
            cpu[0] = process_cpu_s(proc.pid)
        proc.terminate()
        await proc.wait()


async def one_run(args: argparse.Namespace, run: Run, tmp: Path) -> Row:
    total = args.calls * EVENTS_PER_CALL
    lags: list[float] = []
    done = asyncio.Event()
    last_commit = 0.0

    def committed(events: Sequence[NormalisedEvent]) -> None:
        nonlocal last_commit
        now = time.time()
        lags.extend(now - e.occurred_at.timestamp() for e in events)
        last_commit = now
        if len(lags) >= total:
            done.set()

    stream = f"bench-calls-{uuid.uuid4().hex[:8]}"
    async with database(run.database, args.pg_admin_url, tmp) as url:
        await seed(url, args.callers)
        filtered = run.variant != "unfiltered"
        async with peer_process(args, run.rate, filtered) as (port, proc):
            settings = BridgeSettings.build(
                ami_url=f"ami://ivr:s3cret@127.0.0.1:{port}", database_url=url,
                bus_url=args.redis_url, stream=stream, outbox_path=tmp / f"{stream}.db",
                outbox_sync=run.sync, consumer_name="bench", ami_server_filter=filtered,
                roles=frozenset({"consumer"} if run.split else {"reader", "consumer"}),
            )  # fmt: skip
            reader = reader_process(settings) if run.split else contextlib.nullcontext([0.0])
            default_gc()
            redis_before, cpu_before = await redis_cpu_s(args.redis_url), time.process_time()
            pg_before = postgres_cpu_s()
            try:
                async with Bridge(settings, on_committed=committed) as bridge, reader as reader_cpu:
                    VARIANTS[run.variant](bridge)
                    assert proc.stdout is not None
                    async with asyncio.timeout(args.timeout_s):
                        await done.wait()
                        sent = json.loads(await proc.stdout.readline())
                    cpu_s = time.process_time() - cpu_before
                    redis_s = await redis_cpu_s(args.redis_url) - redis_before
                    pg_s = postgres_cpu_s() - pg_before if run.database == "postgresql" else 0.0
                cpu_s += reader_cpu[0]
            finally:
                await delete_prefix(f"{DEFAULT_PREFIX}{{{stream}}}")
    elapsed = last_commit - sent["first"]
    ms = sorted(lag * 1000 for lag in lags)
    return Row(
        run=run, calls=args.calls, events=len(ms), per_s=len(ms) / elapsed,
        ami_per_s=sent["sent"] / elapsed, p50_ms=statistics.median(ms),
        p99_ms=ms[int(len(ms) * 0.99) - 1], max_ms=ms[-1], cpu_s=cpu_s, redis_cpu_s=redis_s,
        pg_cpu_s=pg_s,
    )  # fmt: skip


def table(rows: list[Row]) -> str:
    lines = [
        "| variant | processes | timeline | outbox sync | offered AMI ev/s | calls | "
        "timeline events | "
        "timeline ev/s | AMI ev/s | lag p50 ms | lag p99 ms | lag max ms | "
        "bridge CPU µs / AMI ev | timeline ev / bridge CPU-s | AMI ev / bridge CPU-s | "
        "Redis server CPU µs / AMI ev | PostgreSQL server CPU µs / AMI ev | "
        "cores busy: bridge / + Redis / + PostgreSQL |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        offered = "max" if r.run.rate == 0 else f"{r.run.rate:,}"
        procs = "reader + consumer" if r.run.split else "one"
        ami = r.calls * AMI_PER_CALL
        elapsed_s = r.events / r.per_s
        busy = [r.cpu_s, r.cpu_s + r.redis_cpu_s, r.cpu_s + r.redis_cpu_s + r.pg_cpu_s]
        cores = " / ".join(f"{cpu / elapsed_s:.2f}" for cpu in busy)
        lines.append(
            f"| {r.run.variant} | {procs} | {r.run.database} | {r.run.sync} | {offered} | "
            f"{r.calls:,} | "
            f"{r.events:,} | {r.per_s:,.0f} | {r.ami_per_s:,.0f} | {r.p50_ms:.0f} | "
            f"{r.p99_ms:.0f} | {r.max_ms:.0f} | {r.cpu_s / ami * 1e6:.0f} | "
            f"{r.events / r.cpu_s:,.0f} | {ami / r.cpu_s:,.0f} | "
            f"{r.redis_cpu_s / ami * 1e6:.0f} | {r.pg_cpu_s / ami * 1e6:.0f} | {cores} |"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    if args.serve_peer:
        await serve_peer(args)
        return
    runs = [
        Run(variant, db, sync, int(rate), split == "split")
        for split in args.topologies.split(",")
        for db in ["sqlite"] + (["postgresql"] if args.pg_admin_url else [])
        for sync in args.syncs.split(",")
        for rate in args.rates.split(",")
        for variant in args.variants.split(",")
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
        for run in runs:
            rows.append(await one_run(args, run, Path(tmp)))
            print(f"{run}: {rows[-1].per_s:,.0f} timeline ev/s", file=sys.stderr)
    print(table(rows))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--callers", type=int, default=300, help="known (seeded) callers")
    parser.add_argument("--new-every", type=int, default=10, help="every Nth call: new number")
    parser.add_argument(
        "--concurrent", type=int, default=1, help="calls live at once (their events interleaved)"
    )
    parser.add_argument(
        "--noise", type=int, default=0, help="AMI events per call the bridge does not read"
    )
    parser.add_argument("--expect-filter", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rates", default="0,1000", help="offered AMI events/s, 0 = max")
    parser.add_argument("--rate", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--syncs", default="full")
    parser.add_argument("--variants", default="new", help=", ".join(VARIANTS))
    parser.add_argument("--topologies", default="one,split", help="one and/or split")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--pg-admin-url", default=None)
    parser.add_argument("--timeout-s", type=float, default=300)
    parser.add_argument("--serve-peer", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
