"""CPU and start-up time of one classic AGI process (agi_scripts/ivr_agi.py), without Asterisk.

    .venv/bin/python bench/classic_agi_startup.py --calls 20

Seeds a SQLite timeline (``--customers`` callers as in bench/sipp_cpu.py: mostly-billing
history, account number known), then runs the script ``--calls`` times per caller kind
(``known``: a seeded caller, ``new``: a first-time caller, a new number each call), one at a
time, each against a canned AGI session on its stdin/stdout: the AGI header block, then
``200 result=0`` to every command except ``GET FULL VARIABLE``, answered with key 1 (as a
caller pressing 1 to every prompt). Per process (``os.wait4`` rusage): CPU (user + system),
wall time from spawn to exit, and time to the first AGI command (the silence a caller hears
while the process starts). Also the import time of the script (``python -X importtime``,
sum of the top-level imports) and which of the heavy packages it loaded.

Before the measured calls, one call runs with the configuration cache removed (the spool
directory's ``classic-agi-config.json``, written by trees that have it): the process that
validates the settings and menus after a change, reported on its own line. Trees without
the cache run it too (it is then an ordinary call).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.sipp_testbed import phone, seed_timeline  # noqa: E402

SCRIPT = Path("agi_scripts") / "ivr_agi.py"  # in --tree
HEAVY = ("sqlalchemy", "alembic", "aiohttp", "asyncpg", "pydantic", "yaml", "phonenumbers")
CACHE_FILE = "classic-agi-config.json"  # ivr_engine/classic_config.py, in the spool
MAX_COMMANDS = 40  # a flow that loops is cut off (the run then counts as failed)


@dataclass(frozen=True)
class Run:
    cpu_ms: float
    wall_ms: float
    first_command_ms: float
    commands: int
    ok: bool


def headers(caller_id: str, n: int) -> bytes:
    env = {
        "agi_request": f"/usr/share/asterisk/agi-bin/{SCRIPT.name}",
        "agi_channel": f"PJSIP/bench-{n:08x}",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": f"1732440000.{n}",
        "agi_version": "22.1.0",
        "agi_callerid": caller_id,
        "agi_calleridname": "Bench",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": "3000",
        "agi_rdnis": "unknown",
        "agi_context": "ivr-entry",
        "agi_extension": "3000",
        "agi_priority": "2",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140000000000000",
        "agi_arg_1": "menu=main",
    }
    return "".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n"


def reply(command: str) -> bytes:
    if command.startswith("GET FULL VARIABLE"):
        return b"200 result=1 (1|OK)\n"
    return b"200 result=0\n"


def one_call(tree: Path, env: dict[str, str], caller_id: str, n: int) -> Run:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(tree / SCRIPT)],
        cwd=tree,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(headers(caller_id, n))
    proc.stdin.flush()
    first = float("nan")
    commands = 0
    ended_routed = False
    with contextlib.suppress(BrokenPipeError):
        for raw in proc.stdout:
            command = raw.decode().strip()
            if commands == 0:
                first = (time.perf_counter() - started) * 1000
            commands += 1
            ended_routed = "IVR_OUTCOME=routed" in command
            if commands > MAX_COMMANDS:
                break
            proc.stdin.write(reply(command))
            proc.stdin.flush()
        proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = (time.perf_counter() - started) * 1000
    cpu = (usage.ru_utime + usage.ru_stime) * 1000
    return Run(cpu, wall, first, commands, proc.returncode == 0 and ended_routed)


def import_profile(tree: Path, env: dict[str, str]) -> tuple[float, list[str]]:
    """(total import ms of the script, the heavy packages it loaded)."""
    script = str(tree / SCRIPT)
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{script!r}]\n"
        f"runpy.run_path({script!r}, run_name='bench')\n"  # imports only, no main()
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    top = re.findall(r"^import time:\s+\d+ \|\s+(\d+) \| \S", done.stderr, re.MULTILINE)
    heavy = [m for m in done.stdout.strip().split(",") if m]
    return sum(int(us) for us in top) / 1000, heavy


def summary(kind: str, runs: list[Run]) -> str:
    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.0f}"

    cpu = [r.cpu_ms for r in runs]
    return (
        f"| {kind} | {len(runs)} | {sum(r.ok for r in runs)} | {med(cpu)} "
        f"({min(cpu):.0f}-{max(cpu):.0f}) | {med([r.wall_ms for r in runs])} "
        f"| {med([r.first_command_ms for r in runs])} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20, help="per caller kind")
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench/.work/classic-agi")
    parser.add_argument(
        "--tree",
        type=Path,
        default=REPO,
        help="the source tree to run (e.g. `git archive` of an older commit, for before/after)",
    )
    args = parser.parse_args(argv)
    tree = args.tree.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    db = args.workdir / f"timeline-{args.customers}.db"
    if not db.exists():
        print(f"seeding {args.customers} callers into {db}", flush=True)
        asyncio.run(seed_timeline(f"sqlite:///{db}", args.customers))
    env = {
        **os.environ,
        "IVR_ENGINE_DATABASE_URL": f"sqlite:///{db}",
        "IVR_ENGINE_SPOOL_DIR": str(args.workdir / "spool"),
        "PYTHONPATH": str(tree),
    }
    n = int(time.time() * 1000) % 10**9 * 10  # unique call ids: every call is stored
    (args.workdir / "spool" / CACHE_FILE).unlink(missing_ok=True)
    rows = [summary("first (validates)", [one_call(tree, env, phone(0), n)])]
    import_ms, heavy = import_profile(tree, env)
    for kind in ("known", "new"):
        runs = []
        for i in range(args.calls):
            n += 1
            caller = phone(i % args.customers) if kind == "known" else f"+1559{n % 10**7:07d}"
            runs.append(one_call(tree, env, caller, n))
        rows.append(summary(kind, runs))
    with contextlib.closing(sqlite3.connect(db)) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM timeline_events WHERE event_id LIKE 'voice:%'"
        ).fetchone()[0]
    print(f"tree: {tree}")
    print(f"imports: {import_ms:.0f} ms (-X importtime, top level); loaded: {heavy or 'none'}")
    print("| caller | calls | ok | CPU ms per process, median (min-max) | wall ms | first cmd ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(f"voice events stored in {db.name} so far (all runs): {stored}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
