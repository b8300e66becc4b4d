"""Calls through Asterisk: CPU per call and highest clean calls/s (issue #2).

    .venv/bin/python bench/sipp_cpu.py                 # as root; ~12 min; writes results.md
    .venv/bin/python bench/sipp_cpu.py --seconds 20 --cpu-repeats 1 --no-write

SIPp callers -> the real Asterisk 22 (scripts/asterisk-testbed.sh, configs bench/asterisk/)
in one session, up to six variants of the same menu (config/menus/main.yaml) interleaved:

* ``fastagi``: the full personalised flow (``ivr-engine run``, SQLite timeline seeded with
  ``--customers`` callers with mostly-billing history and a known account number): the
  caller hears the shortcut offer, presses 1, is not asked for the account number.
* ``dialplan``: the same menu as pure dialplan (ivr-fail): the caller presses 6 (billing).
* ``classic``: agi_scripts/ivr_agi.py, one process per call, its own copy of the timeline.
* ``trivial``: bench/trivial_fastagi.py, a FastAGI server with no database and the fewest
  AGI commands a menu can take (Read, GET, MSet): the floor of any FastAGI flow here.
* ``bare``: a FastAGI session that only hands variables to the dialplan (the trivial
  server's ``/bare``: one MSet), then the pure-dialplan menu: what a FastAGI session alone
  costs, i.e. the floor of a design that decides over AGI and plays the menu in dialplan.
* ``async``: the trivial menu (same commands, same MSet) over AsyncAGI
  (bench/trivial_asyncagi.py): ``AGI(agi:async)``, every call driven over one persistent AMI
  connection instead of a TCP connection per call. Its server (and so its AMI session) runs
  only during its own runs: a connected AMI session costs Asterisk a wake-up per event of
  every call, which must not load the other variants' calls.

Per run: CPU = delta of utime+stime of Asterisk (+ cutime+cstime: its reaped AGI children)
and of the variant's AGI server (engine, trivial/bare or async), from /proc/<pid>/stat, divided by
the calls. A run is clean with 0 failed calls, INVITE retransmissions < 0.1 %, call set-up
(INVITE -> 200 OK) p99 < 100 ms, and every call routed to billing (AMI UserEvent IvrRouted;
personalised for the engine variants), i.e. no missed digit. Phase 1 measures CPU per call
at ``--cpu-rate`` (rotating the variant order each repeat); phase 2 climbs a rate ladder per
variant, interleaved, until a variant's first unclean point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sipp_testbed as tb
from sipp_load import SippStats, run_sipp, write_callers, write_scenario

RESULTS = tb.REPO / "bench" / "results.md"
HEADING = "## Calls through Asterisk: CPU per call"


@dataclass(frozen=True)
class Variant:
    name: str
    destination: str
    key: str
    decision: str  # IvrRouted Decision expected
    key_delay_ms: int  # ACK -> key press; the classic script first has to start (imports)


VARIANTS = {
    "dialplan": Variant("dialplan", "2000", "6", "dialplan-fallback", 2500),
    "fastagi": Variant("fastagi", "1000", "1", "personalised", 2500),
    "classic": Variant("classic", "3000", "1", "personalised", 6000),
    "trivial": Variant("trivial", "4000", "6", "trivial", 2500),
    # The pure-dialplan menu after a FastAGI session that only hands over variables (one
    # MSet, as a decide-only engine would): what a FastAGI session alone costs.
    "bare": Variant("bare", "5000", "6", "dialplan-fallback", 2500),
    # The trivial menu over AsyncAGI (one persistent AMI connection, no TCP per call).
    "async": Variant("async", "6000", "6", "trivial", 2500),
}
TRIVIAL_PORT = 4575


@dataclass
class RunResult:
    variant: str
    phase: str
    rate: float
    calls: int
    wall_s: float
    asterisk_cpu_s: float
    children_cpu_s: float
    engine_cpu_s: float
    successful: int
    failed: int
    retransmissions: int
    setup_p50_ms: float
    setup_p99_ms: float
    routed_ok: int
    routed_other: dict[str, int] = field(default_factory=dict)
    sipp_rc: int = 0
    errors_tail: str = ""

    @property
    def cpu_ms_per_call(self) -> float:
        total = self.asterisk_cpu_s + self.children_cpu_s + self.engine_cpu_s
        return 1000 * total / self.calls

    def problems(self) -> list[str]:
        found = []
        if self.failed or self.successful != self.calls:
            found.append(f"{self.failed} failed, {self.successful}/{self.calls} ok")
        if self.retransmissions / self.calls >= 0.001:
            found.append(f"{self.retransmissions} retransmissions")
        if not self.setup_p99_ms < 100:
            found.append(f"set-up p99 {self.setup_p99_ms:.0f} ms")
        if self.routed_ok != self.calls:
            found.append(f"routed ok {self.routed_ok}/{self.calls} {self.routed_other}")
        return found


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, asterisk: int) -> None:
        self.args, self.workdir, self.asterisk = args, workdir, asterisk
        self.engine: int = 0
        self.trivial: int = 0  # the trivial FastAGI server's pid
        self.asyncagi: int = 0  # the AsyncAGI server's pid, during the async runs only
        self.ami = tb.RoutedCounter()
        self.results: list[RunResult] = []
        self.callers = write_callers(
            workdir / "callers.csv", [tb.phone(i) for i in range(args.customers)]
        )

    async def run(
        self, variant: Variant, rate: float, phase: str, seconds: float | None = None
    ) -> RunResult:
        if variant.name != "async":
            return await self._measure(variant, rate, phase, seconds)
        async with tb.asyncagi_server() as pid:  # logged in before, out after the window
            self.asyncagi = pid
            return await self._measure(variant, rate, phase, seconds)

    async def _measure(
        self, variant: Variant, rate: float, phase: str, seconds: float | None
    ) -> RunResult:
        calls = max(1, round(rate * (seconds or self.args.seconds)))
        run_dir = self.workdir / f"{len(self.results):02d}-{phase}-{variant.name}-{rate:g}"
        run_dir.mkdir(parents=True)
        scenario = write_scenario(
            run_dir / f"{variant.name}.xml",
            destination=variant.destination,
            key=variant.key,
            key_delay_ms=variant.key_delay_ms,
        )
        left = await asyncio.to_thread(tb.wait_idle)
        if left:
            print(f"warning: {left} calls still up before this run", flush=True)
        before_counts = self.ami.counts.copy()
        servers = {"fastagi": self.engine, "trivial": self.trivial, "bare": self.trivial,
                   "async": self.asyncagi}  # fmt: skip
        server = servers.get(variant.name)
        ast0, t0 = tb.cpu_ticks(self.asterisk), time.monotonic()
        eng0 = tb.cpu_ticks(server) if server else None
        stats = await run_sipp(scenario, self.callers, rate=rate, calls=calls, run_dir=run_dir)
        deadline = time.monotonic() + 5  # the IvrRouted events of the last calls
        while self.ami.total() - sum(before_counts.values()) < calls:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # the engine's recorder writes after the hang-up
        ast1, t1 = tb.cpu_ticks(self.asterisk), time.monotonic()
        eng1 = tb.cpu_ticks(server) if server else None
        result = self._result(variant, phase, rate, calls, stats, before_counts)
        result.wall_s = t1 - t0
        result.asterisk_cpu_s = (ast1.own - ast0.own) / tb.CLK_TCK
        result.children_cpu_s = (ast1.children - ast0.children) / tb.CLK_TCK
        if eng0 is not None and eng1 is not None:  # the variant's own AGI server
            result.engine_cpu_s = (eng1.own - eng0.own) / tb.CLK_TCK
        self.results.append(result)
        verdict = "clean" if not result.problems() else "; ".join(result.problems())
        print(
            f"{phase:>6} {variant.name:>8} {rate:6g}/s {calls:5d} calls: "
            f"{result.cpu_ms_per_call:6.2f} ms CPU/call (asterisk {result.asterisk_cpu_s:.1f} s,"
            f" children {result.children_cpu_s:.1f} s, engine {result.engine_cpu_s:.1f} s),"
            f" set-up p99 {result.setup_p99_ms:.0f} ms: {verdict}",
            flush=True,
        )
        return result

    def _result(
        self,
        variant: Variant,
        phase: str,
        rate: float,
        calls: int,
        stats: SippStats,
        before: dict[tuple[str, str], int],
    ) -> RunResult:
        delta = {k: v - before.get(k, 0) for k, v in self.ami.counts.items()}
        ok = delta.get(("billing", variant.decision), 0)
        other = {
            f"{i}/{d}": n
            for (i, d), n in delta.items()
            if n and (i, d) != ("billing", variant.decision)
        }
        return RunResult(
            variant=variant.name, phase=phase, rate=rate, calls=calls, wall_s=0.0,
            asterisk_cpu_s=0.0, children_cpu_s=0.0, engine_cpu_s=0.0,
            successful=stats.successful, failed=stats.failed,
            retransmissions=stats.retransmissions,
            setup_p50_ms=stats.setup_percentile(0.50), setup_p99_ms=stats.setup_percentile(0.99),
            routed_ok=ok, routed_other=other, sipp_rc=stats.returncode,
            errors_tail=stats.errors_tail[-600:],
        )  # fmt: skip

    async def cpu_phase(self) -> None:
        order = [VARIANTS[n] for n in self.args.variants]
        for repeat in range(self.args.cpu_repeats):
            rotated = order[repeat % len(order) :] + order[: repeat % len(order)]
            for variant in rotated:
                await self.run(variant, self.cpu_rate(variant), "cpu")

    def cpu_rate(self, variant: Variant) -> float:
        classic = variant.name == "classic"
        return float(self.args.classic_cpu_rate if classic else self.args.cpu_rate)

    async def ladder_phase(self) -> None:
        ladders = {
            "dialplan": self.args.ladder,
            "fastagi": self.args.ladder,
            "classic": self.args.classic_ladder,
            "trivial": self.args.ladder,
            "bare": self.args.ladder,
            "async": self.args.ladder,
        }
        active = set(self.args.variants)
        for step in range(max(len(v) for v in ladders.values())):
            for name in self.args.variants:
                if name in active and step < len(ladders[name]):
                    result = await self.run(VARIANTS[name], ladders[name][step], "ladder")
                    if result.problems():
                        active.discard(name)


# ------------------------------------------------------------------------------ report


def summarise(results: list[RunResult]) -> dict[str, dict[str, float | None]]:
    cpu = {
        name: [r.cpu_ms_per_call for r in results if r.variant == name and r.phase == "cpu"]
        for name in VARIANTS
    }
    base = cpu["dialplan"]
    summary: dict[str, dict[str, float | None]] = {}
    for name, values in cpu.items():
        clean = [
            r.rate
            for r in results
            if r.variant == name and r.phase != "warmup" and not r.problems()
        ]
        med = statistics.median(values) if values else None
        # Each repeat runs every variant once, in turn: a variant's run over the dialplan
        # run of the same repeat, minutes apart, cancels the host's drift between repeats
        # (Asterisk's own CPU per call moved by 20 % between repeats on these VMs).
        pairs = [v / b for v, b in zip(values, base, strict=False) if b]
        summary[name] = {
            "cpu_ms_median": med,
            "cpu_ms_min": min(values) if values else None,
            "cpu_ms_max": max(values) if values else None,
            "ratio": statistics.median(pairs) if pairs else None,
            "ratio_min": min(pairs) if pairs else None,
            "ratio_max": max(pairs) if pairs else None,
            "highest_clean_rate": max(clean) if clean else None,
        }
    return summary


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


Summary = dict[str, dict[str, float | None]]


def markdown(meta: dict[str, object], results: list[RunResult], summary: Summary) -> str:
    names = {"dialplan": "pure dialplan (ivr-fail menu, key 6)",
             "fastagi": "full personalised flow, FastAGI engine (shortcut, key 1)",
             "classic": "classic process-per-call AGI (agi_scripts/ivr_agi.py, key 1)",
             "trivial": "trivial FastAGI, no DB (bench/trivial_fastagi.py, key 6)",
             "bare": "bare FastAGI session (one MSet) + pure-dialplan menu (key 6)",
             "async": "trivial menu over AsyncAGI, one AMI connection (key 6)"}  # fmt: skip
    lines = [
        HEADING,
        "",
        f"Measured {meta['date']} on {meta['machine']} with `{meta['command']}`",
        f"({meta['asterisk']}, SIPp {meta['sipp']}; {meta['customers']} seeded callers;"
        f" {meta['seconds']} s per rate point; FastAGI listen backlog seen by `ss -ltn`:"
        f" {meta['backlog']}; 1-min load average {meta['loadavg']}).",
        "",
        "| variant | CPU per call (median, ms) | vs pure dialplan, same repeat (median, min-max)"
        " | highest clean calls/s |",
        "| --- | --- | --- | --- |",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {names[name]} | {_fmt(s['cpu_ms_median'], '.2f')} |"
            f" {_fmt(s['ratio'], '.2f')}"
            f" ({_fmt(s['ratio_min'], '.2f')}-{_fmt(s['ratio_max'], '.2f')}) |"
            f" {_fmt(s['highest_clean_rate'], 'g')} (highest rate tried: "
            f"{max((r.rate for r in results if r.variant == name), default=0):g}) |"
        )
    lines += ["", "Every run (in the order run):", "",
              "| phase | variant | calls/s | calls | CPU ms/call | Asterisk s | AGI children s |"
              " engine s | set-up p50/p99 ms | retrans | routed ok | verdict |",
              "|" + " --- |" * 12]  # fmt: skip
    for r in results:
        verdict = "clean" if not r.problems() else "; ".join(r.problems())
        lines.append(
            f"| {r.phase} | {r.variant} | {r.rate:g} | {r.calls} | {r.cpu_ms_per_call:.2f} |"
            f" {r.asterisk_cpu_s:.2f} | {r.children_cpu_s:.2f} | {r.engine_cpu_s:.2f} |"
            f" {r.setup_p50_ms:.1f}/{r.setup_p99_ms:.1f} | {r.retransmissions} |"
            f" {r.routed_ok}/{r.calls} | {verdict} |"
        )
    lines += ["", *str(meta["method"]).splitlines(), ""]
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace (or append) only this bench's section of bench/results.md."""
    current = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n"
    start = current.find(HEADING)
    if start < 0:
        RESULTS.write_text(current.rstrip("\n") + "\n\n" + text, encoding="utf-8")
        return
    # up to the next section, or to the first sub-section ("### ", kept: written by hand)
    ends = [
        i for i in (current.find(h, start + len(HEADING)) for h in ("\n## ", "\n### ")) if i >= 0
    ]
    end = min(ends) if ends else -1
    tail = current[end + 1 :] if end >= 0 else ""
    RESULTS.write_text(current[:start] + text + ("\n" + tail if tail else ""), encoding="utf-8")


METHOD = """Method: `bench/sipp_cpu.py` starts the testbed Asterisk with `bench/asterisk/` (the e2e
configs with verbose logging off, func_env, RTP 10000-29999; numbers 1000 -> ivr-entry, 2000
-> ivr-fail, 3000 -> ivr-entry with the classic AGI script, 4000 -> the trivial FastAGI
server, 5000 -> a bare FastAGI session (the trivial server's `/bare`: one MSet) then
ivr-fail's menu, 6000 -> the trivial menu over AsyncAGI, bench/trivial_asyncagi.py, whose
AMI session is up only during its own runs), the engine (`ivr-engine run`, SQLite), and an
AMI listener (`Events: user`). Each call: SIPp INVITE with the caller id from `-inf` (seeded
customers: history billing x4 + tech_support, account number known), ACK, one RFC 4733 key
2.5 s later (classic: {classic_key_s:g} s, as its process takes seconds to start and a key
sent before its Read is lost; stock sip-tester capture), the `transfer` prompt, BYE from
Asterisk. CPU per call = delta utime+stime (+ cutime+cstime, i.e. the reaped classic AGI
processes) of Asterisk, plus the engine's for the FastAGI variant, the trivial server's for
the trivial and bare ones (4000 -> bench/trivial_fastagi.py: one Read, one GET, one MSet, no
database; 5000: one MSet) and the AsyncAGI server's for the async one (the same commands),
over the run (first INVITE until every call ended and 0.5 s more), divided by the calls.
Clean = 0 failed calls, retransmissions < 0.1 %, set-up (INVITE -> 200 OK, SIPp
`-trace_rtt`) p99 < 100 ms, every call's IvrRouted = billing with the expected Decision (a
missed digit re-prompts and ends elsewhere). SIPp runs on the same 2 cores (its CPU is not
counted); the machine is shared, so a single unclean point can be noise."""


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


def _machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), Linux {platform.release()}"


def _parser() -> argparse.ArgumentParser:
    rates = lambda s: [float(x) for x in s.split(",")]  # noqa: E731
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=20, help="per rate point")
    parser.add_argument("--cpu-rate", type=float, default=10)
    parser.add_argument("--cpu-repeats", type=int, default=3)
    parser.add_argument("--ladder", type=rates, default=[20, 40, 70, 100])
    parser.add_argument("--classic-cpu-rate", type=float, default=0.2)
    parser.add_argument("--classic-ladder", type=rates, default=[0.1, 0.2, 0.5])
    parser.add_argument(
        "--workdir", type=Path, default=Path(f"/var/tmp/ivr-sipp-cpu-{os.getpid()}")
    )
    parser.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS))
    parser.add_argument("--classic-key-delay-ms", type=int, default=6000)
    parser.add_argument("--no-write", action="store_true", help="do not update results.md")
    return parser


async def _session(args: argparse.Namespace, workdir: Path) -> tuple[list[RunResult], int | None]:
    fast_db, classic_db = workdir / "fastagi.db", workdir / "classic.db"
    print(f"seeding {args.customers} callers into {fast_db}", flush=True)
    await tb.seed_timeline(f"sqlite:///{fast_db}", args.customers)
    tb.copy_db(fast_db, classic_db)
    wrapper = tb.write_classic_wrapper(workdir)
    classic_env = {
        "IVR_BENCH_CLASSIC_AGI": str(wrapper),
        "IVR_ENGINE_DATABASE_URL": f"sqlite:///{classic_db}",
        "IVR_ENGINE_MENUS_DIR": str(tb.REPO / "config" / "menus"),
        "IVR_ENGINE_SPOOL_DIR": str(workdir / "spool-classic"),
        "IVR_ENGINE_LOG_LEVEL": "WARNING",
    }
    with tb.classic_agi_visible(workdir):
        engine = trivial = None
        try:
            asterisk = tb.start_asterisk(classic_env)
            if "fastagi" in args.variants:  # port 4573 is free for others otherwise
                engine = tb.start_engine(f"sqlite:///{fast_db}", workdir)
            trivial = subprocess.Popen(  # noqa: ASYNC220 - before any call, like start_engine
                [sys.executable, str(tb.REPO / "bench/trivial_fastagi.py"), "--port",
                 str(TRIVIAL_PORT)], cwd=tb.REPO,
            )  # fmt: skip
            backlog = tb.listen_backlog(tb.AGI_PORT) if engine else None
            print(f"asterisk pid {asterisk}, engine {engine and engine.pid}, backlog {backlog}")
            bench = Bench(args, workdir, asterisk)
            bench.engine, bench.trivial = engine.pid if engine else 0, trivial.pid
            await bench.ami.start()
            try:
                for variant in (VARIANTS[n] for n in args.variants):
                    await bench.run(variant, min(2, bench.cpu_rate(variant)), "warmup", 4)
                await bench.cpu_phase()
                await bench.ladder_phase()
            finally:
                await bench.ami.stop()
            return bench.results, backlog
        finally:
            if trivial is not None:
                trivial.terminate()
                trivial.wait(10)
            if engine is not None:
                tb.stop_engine(engine)
            tb.testbed("stop")


def main() -> int:
    args = _parser().parse_args()
    classic = VARIANTS["classic"]
    VARIANTS["classic"] = Variant(**{**asdict(classic), "key_delay_ms": args.classic_key_delay_ms})
    if os.geteuid() != 0:
        print("run as root (chroot, mount)", file=sys.stderr)
        return 2
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, object] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "command": "sudo .venv/bin/python bench/sipp_cpu.py " + " ".join(sys.argv[1:]),
        "asterisk": _version(["chroot", str(tb.CHROOT), "asterisk", "-V"]),
        "sipp": _version(["sipp", "-v"]).replace("SIPp ", ""),
        "customers": args.customers,
        "seconds": args.seconds,
        "method": METHOD.format(classic_key_s=args.classic_key_delay_ms / 1000),
    }
    load_before = os.getloadavg()
    results, backlog = asyncio.run(_session(args, workdir))
    meta["backlog"] = backlog
    meta["loadavg"] = f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after"
    for name, db in (("fastagi", workdir / "fastagi.db"), ("classic", workdir / "classic.db")):
        meta[f"records_{name}"] = tb.call_records(db)
    summary = summarise(results)
    text = markdown(meta, results, summary)
    records = (
        f"Stored call records (timeline `voice:` events, all runs incl. warm-up): "
        f"FastAGI {meta['records_fastagi']}, classic {meta['records_classic']}."
    )
    text = text.rstrip("\n") + "\n\n" + records + "\n"
    (workdir / "results.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "runs": [asdict(r) for r in results]},
                   indent=2, default=str),
        encoding="utf-8",
    )  # fmt: skip
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"updated {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
