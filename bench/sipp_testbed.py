"""The bench's side of the testbed: the Asterisk chroot (with the classic AGI script made
runnable inside it), the FastAGI engine process, an AMI listener counting the dialplan's
``IvrRouted`` events, CPU counters from /proc, and the seeded SQLite timelines."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ivr_engine.domain.models import KnownField  # noqa: E402
from ivr_engine.ports import Identity, NewTimelineEvent  # noqa: E402
from ivr_engine.timeline import open_timeline  # noqa: E402

CHROOT = Path(os.environ.get("IVR_ASTERISK_CHROOT", "/var/cache/ivr-engine/asterisk-sid"))
TESTBED = REPO / "scripts" / "asterisk-testbed.sh"
BENCH_ASTERISK_CONFIG = REPO / "bench" / "asterisk"
AGI_PORT = 4573  # IVR_ENGINE_ADDR in bench/asterisk/extensions.conf
AMI = ("127.0.0.1", 5038, "ivrtest", "ivrtest")  # tests/e2e/asterisk/manager.conf
CLK_TCK = os.sysconf("SC_CLK_TCK")
HISTORY = ("billing", "billing", "tech_support", "billing", "billing")  # 80 % billing


def phone(i: int) -> str:
    return f"+1555700{i:04d}"


# ------------------------------------------------------------------------------ timeline


async def seed_timeline(url: str, customers: int) -> None:
    """``customers`` callers, each with mostly-billing history and a known account number."""
    timeline = await open_timeline(url)
    now = datetime.now(UTC)
    try:
        events: list[NewTimelineEvent] = []
        for i in range(customers):
            account = KnownField("account_number", f"{40_000_000 + i}", "chat", now)
            customer = await timeline.store.create_customer(
                f"Bench {i}", [Identity("phone", phone(i))], [account]
            )
            events += [
                NewTimelineEvent(
                    event_id=f"seed:{i}:{n}",
                    customer_id=customer.customer_id,
                    occurred_at=now - timedelta(days=2 + 5 * n),
                    channel="voice" if n % 2 else "chat",
                    event_type="call.ivr" if n % 2 else "chat.conversation",
                    intent=intent,
                )
                for n, intent in enumerate(HISTORY)
            ]
            if len(events) >= 5000:
                await timeline.store.append_events(events)
                events = []
        await timeline.store.append_events(events)
    finally:
        await timeline.close()


def call_records(db: Path) -> dict[str, int]:
    """What the engine stored for the bench's calls (``voice:`` events)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute(
            "SELECT count(*),"
            " coalesce(sum(intent = 'billing'), 0),"
            " coalesce(sum(json_extract(data, '$.decision.shortcut') = 'billing'), 0),"
            " coalesce(sum(json_array_length(json_extract(data, '$.entered')) > 0), 0),"
            " coalesce(sum(json_array_length(json_extract(data, '$.prefilled')) > 0), 0)"
            " FROM timeline_events WHERE event_id LIKE 'voice:%'"
        ).fetchone()
    keys = ("calls", "intent_billing", "shortcut_billing", "asked_a_field", "prefilled")
    return dict(zip(keys, (int(v) for v in row), strict=True))


# ------------------------------------------------------------------------------ processes


@dataclass(frozen=True)
class CpuTicks:
    own: int  # utime + stime
    children: int  # cutime + cstime (reaped children: the classic AGI scripts)


def cpu_ticks(pid: int) -> CpuTicks:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after "pid (comm)": state=0 ... utime=11 stime=12 cutime=13 cstime=14
    return CpuTicks(int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))


def asterisk_pid() -> int:
    real = CHROOT.resolve()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() == "asterisk" and Path(
                os.readlink(entry / "root")
            ) == real:
                return int(entry.name)
    raise RuntimeError(f"no Asterisk running in {CHROOT}")


def listen_backlog(port: int) -> int | None:
    """The accept-queue size of a listening TCP socket (``ss -ltn``: Send-Q)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            return int(parts[2])
    return None


@contextlib.contextmanager
def classic_agi_visible(workdir: Path) -> Iterator[None]:
    """Bind-mount the repository and the Python installation read-only (and the work dir
    read-write) at the same paths inside the chroot, so Asterisk can exec the classic AGI
    script with the project's venv. Unmounted afterwards."""
    binds = [(REPO, REPO, True), *_interpreter_binds(), (workdir, workdir, False)]
    mounts: list[Path] = []
    created: list[Path] = []  # mount points made for files, removed afterwards
    try:
        for source, at, read_only in binds:
            target = CHROOT / str(at).lstrip("/")
            if source.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
                created.append(target)
            subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
            mounts.append(target)
            if read_only:
                subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
        yield
    finally:
        for target in reversed(mounts):
            subprocess.run(["umount", str(target)], check=False)
        for target in created:
            target.unlink(missing_ok=True)


def _interpreter_binds() -> list[tuple[Path, Path, bool]]:
    """(source, path in the chroot, read-only) for the venv's interpreter: a self-contained
    prefix (pyenv: ``~/.pyenv``) as a whole; the distribution's Python (``/usr/bin/python3.11``,
    which the venv reaches through ``/usr/bin/python3``) as its binary under both names and
    its standard library (the chroot, Debian sid, has the C libraries it links)."""
    real = Path(os.path.realpath(sys.executable))
    if real.parent != Path("/usr/bin"):
        return [(real.parents[3], real.parents[3], True)]  # <prefix>/versions/X/bin/python
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = Path("/usr/lib") / version
    names = {real, Path("/usr/bin/python3"), Path("/usr/bin") / version}
    binds = [(real, name, True) for name in sorted(names)] + [(stdlib, stdlib, True)]
    modules = sorted((stdlib / "lib-dynload").glob("*.so"))
    return binds + [(lib, lib, True) for lib in _libraries_missing_in_chroot([real, *modules])]


def _libraries_missing_in_chroot(binaries: list[Path]) -> list[Path]:
    """The shared libraries ``binaries`` link (by ``ldd``) that the chroot has no file for."""
    out = subprocess.run(
        ["ldd", *map(str, binaries)], capture_output=True, text=True, check=False
    ).stdout
    needed = {Path(line.split("=>", 1)[1].split()[0]) for line in out.splitlines()
              if "=> /" in line}  # fmt: skip
    return sorted(lib for lib in needed if not (CHROOT / str(lib).lstrip("/")).exists())


def write_classic_wrapper(workdir: Path) -> Path:
    """An executable that runs agi_scripts/ivr_agi.py with the venv's interpreter (its
    shebang, ``/usr/bin/env python3``, would find the chroot's python, without the venv)."""
    venv_python = REPO / ".venv" / "bin" / "python"
    path = workdir / "classic_agi.py"
    path.write_text(
        f"#!{venv_python}\nimport runpy\n"
        f"runpy.run_path({str(REPO / 'agi_scripts' / 'ivr_agi.py')!r}, run_name='__main__')\n",
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


def active_calls() -> int:
    out = subprocess.run(
        ["chroot", str(CHROOT), "asterisk", "-rx", "core show channels count"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        if line.endswith("active calls") or line.endswith("active call"):
            return int(line.split()[0])
    return -1


def wait_idle(timeout_s: float = 60) -> int:
    """Wait (between runs, outside the measured window) until Asterisk has no call left,
    so one run's stragglers (e.g. slow classic AGI processes) do not load the next run."""
    deadline = time.monotonic() + timeout_s
    while (calls := active_calls()) > 0 and time.monotonic() < deadline:
        time.sleep(1)
    return calls


def testbed(action: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(["bash", str(TESTBED), action], check=True, env=env)


def start_asterisk(classic_env: dict[str, str]) -> int:
    env = {**os.environ, "IVR_ASTERISK_CONFIG": str(BENCH_ASTERISK_CONFIG), **classic_env}
    testbed("start", env)
    return asterisk_pid()


def start_engine(db_url: str, workdir: Path) -> subprocess.Popen[bytes]:
    ready = workdir / "engine.ready"
    ready.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_ENGINE_")}
    env["IVR_ENGINE_SPOOL_DIR"] = str(workdir / "spool-fastagi")
    log = (workdir / "engine.log").open("ab")
    proc = subprocess.Popen(
        [str(REPO / ".venv/bin/ivr-engine"), "--database-url", db_url, "--log-level",
         "WARNING", "run", "--agi-port", str(AGI_PORT), "--http-port", "0",
         "--ready-file", str(ready)],
        cwd=REPO, env=env, stdout=log, stderr=log,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"engine did not start; see {workdir / 'engine.log'}")
        time.sleep(0.1)
    return proc


def stop_engine(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.asynccontextmanager
async def asyncagi_server() -> AsyncIterator[int]:
    """bench/trivial_asyncagi.py, logged in to AMI (it prints ``ready``): yields its pid."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "bench" / "trivial_asyncagi.py"), cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = await proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"AsyncAGI server did not log in: {line!r}")
        yield proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


def copy_db(source: Path, target: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{target}{suffix}")


# ------------------------------------------------------------------------------ AMI


class RoutedCounter:
    """Counts the dialplan's ``UserEvent: IvrRouted`` by (Intent, Decision) over AMI
    (logged in with ``Events: user``, so Asterisk formats no other events for us)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        host, port, user, secret = AMI
        reader, writer = await asyncio.open_connection(host, port)
        self._writer = writer
        login = f"Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\nEvents: user\r\n"
        writer.write(login.encode() + b"\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            await reader.readline()  # banner
            reply = await reader.readuntil(b"\r\n\r\n")
        if b"Success" not in reply:
            raise RuntimeError(f"AMI login failed: {reply!r}")
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            block = await reader.readuntil(b"\r\n\r\n")
            fields = dict(
                line.split(": ", 1) for line in block.decode(errors="replace").split("\r\n")
                if ": " in line
            )  # fmt: skip
            if fields.get("UserEvent") == "IvrRouted":
                self.counts[(fields.get("Intent", ""), fields.get("Decision", ""))] += 1

    def total(self) -> int:
        return sum(self.counts.values())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, asyncio.IncompleteReadError):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
