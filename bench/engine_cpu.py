"""The engine's own CPU per call, with a synthetic Asterisk (no SIP, no media).

    .venv/bin/python bench/engine_cpu.py --rate 20 --calls 400 --repeats 3
    .venv/bin/python bench/engine_cpu.py --trees /tmp/wt-before,. --repeats 3   # A/B

The SIPp run (bench/sipp_cpu.py) counts Asterisk too, whose CPU per call swings by a few
ms between runs on a shared VM: far more than the engine's part. This isolates the engine:
it seeds the same SQLite timeline as the SIPp bench (callers with mostly-billing history
and a known account number), starts ``ivr-engine run`` (or the trivial FastAGI server,
``--trivial``) as its own process, and plays Asterisk's side of each FastAGI call at a fixed
rate the way a caller paces it: the header block, then each ``EXEC "Read"`` answered
``--hold-ms`` later (the caller listening, then pressing 1), everything else at once.
CPU per call = the engine process's utime+stime delta over the measured calls (after a
warm-up) divided by their number. ``--trees`` runs the engine from each source tree in
turn (PYTHONPATH), interleaved, so before/after are measured side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from decision_latency import CallTrace, EngineProcess, _wait_ready, place_call
from sipp_testbed import phone, seed_timeline

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"


async def start_engine(tree: Path, db: Path, tmp: Path, *, trivial: bool) -> EngineProcess:
    ready = tmp / "ready"
    ready.unlink(missing_ok=True)
    # IVR_BENCH_EXTRA_PATH: e.g. a directory with a sitecustomize.py probe for the engine
    path = [str(tree), os.environ.get("IVR_BENCH_EXTRA_PATH", "")]
    env = {**os.environ, "IVR_ENGINE_SPOOL_DIR": str(tmp / "spool")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, path))
    if trivial:
        port = 4590
        script = os.environ.get("IVR_BENCH_TRIVIAL_SCRIPT", str(ROOT / "bench/trivial_fastagi.py"))
        command = [sys.executable, script, "--port", str(port)]
    else:
        command = [sys.executable, "-m", "ivr_engine", "--database-url", f"sqlite:///{db}"]
        command += ["run", "--agi-port", "0", "--http-port", "0", "--ready-file", str(ready)]
    log = WORK / "engine-cpu.log"
    with log.open("ab") as out:
        out.write(f"--- engine from {tree} at {time.strftime('%H:%M:%S')}\n".encode())
        out.flush()
        process = await asyncio.create_subprocess_exec(
            *command, cwd=tree, env=env, stdout=out, stderr=out
        )
    if trivial:
        await asyncio.sleep(1.0)
        return EngineProcess(process, port, workers=1)
    return EngineProcess(process, await _wait_ready(process, ready, log), workers=1)


async def measure(
    engine: EngineProcess,
    customers: int,
    rate: float,
    calls: int,
    warmup: int,
    hold_s: float,
    attach: str | None = None,
) -> tuple[float, int]:
    """(engine CPU seconds, failed calls) over ``calls`` calls after ``warmup``."""
    tag = f"cpu{time.time_ns() // 1_000_000}"
    tasks: list[asyncio.Task[CallTrace]] = []
    start = time.perf_counter()
    cpu0 = 0.0
    spy: asyncio.subprocess.Process | None = None
    for n in range(warmup + calls):
        if n == warmup:
            await asyncio.gather(*tasks)
            if attach is not None:  # a profiler's own CPU is not the engine's: not counted
                spy = await asyncio.create_subprocess_exec(
                    *shlex.split(attach.format(pid=engine.process.pid)),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                await asyncio.sleep(1.0)
            tasks, cpu0 = [], engine.cpu_s()
            start = time.perf_counter()
        due = start + (n - (warmup if n >= warmup else 0)) / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        caller = (phone(n % customers), True)
        tasks.append(asyncio.create_task(place_call(engine.agi_port, tag, n, caller, hold_s)))
    traces = await asyncio.gather(*tasks)
    cpu = engine.cpu_s() - cpu0
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        await spy.wait()
    failed = sum(1 for t in traces if t.error is not None)
    return cpu, failed


async def main(args: argparse.Namespace) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    db = WORK / f"engine-cpu-{args.customers}.db"
    if not db.exists():
        print(f"seeding {args.customers} callers into {db}", flush=True)
        await seed_timeline(f"sqlite:///{db}", args.customers)
    trees: list[Path] = args.trees
    results: dict[str, list[float]] = {str(t): [] for t in trees}
    for repeat in range(args.repeats):
        for tree in trees:
            with tempfile.TemporaryDirectory(prefix="ivr-cpu-") as tmp:
                engine = await start_engine(tree, db, Path(tmp), trivial=args.trivial)
                try:
                    cpu, failed = await measure(
                        engine, args.customers, args.rate, args.calls, args.warmup,
                        args.hold_ms / 1000, args.attach,
                    )  # fmt: skip
                finally:
                    engine.process.terminate()
                    await engine.process.wait()
            per_call = cpu / args.calls * 1000
            results[str(tree)].append(per_call)
            print(
                f"repeat {repeat + 1} tree {tree}: {per_call:.2f} ms CPU/call "
                f"({cpu:.2f} s / {args.calls} calls, {failed} failed)",
                flush=True,
            )
    for tree, values in results.items():
        print(f"{tree}: median {statistics.median(values):.2f} ms/call, runs {values}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--trees",
        type=lambda text: [Path(t).resolve() for t in text.split(",")],
        default=[ROOT],
        help="comma-separated source trees",
    )
    p.add_argument("--rate", type=float, default=20.0, help="calls started per second")
    p.add_argument("--calls", type=int, default=400)
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--hold-ms", type=float, default=2500.0)
    p.add_argument("--customers", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--attach",
        help="a profiler run on the engine during the measured calls, stopped by SIGINT, "
        "e.g. 'py-spy record --format raw -p {pid} -o /tmp/stacks.txt'",
    )
    p.add_argument("--trivial", action="store_true", help="the trivial FastAGI server")
    return p


if __name__ == "__main__":
    asyncio.run(main(parser().parse_args()))
