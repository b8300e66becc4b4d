"""Helpers for tests of ``ivr-engine run --workers N`` with real processes.

``EngineProcess``: the real CLI in a child process; its log (stderr) is read as it comes, so
tests wait for what the supervisor and the workers report (``wait_log``), never on sleeps.
``HeldCall``: a FastAGI call that stops at the first menu (the caller is listening), so
``owner_pid`` can tell which worker process holds the server side of its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ivr_engine.telephony.agi.channel import read_mset_options
from tests.component.fake_asterisk import asterisk_env, header_block

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0
STOP_DEADLINE_S = 30.0  # SIGTERM to exit: the drain (5 s) and the flush take far less
READY = re.compile(r"(worker \d+) ready \(pid (\d+)\)")


@dataclass
class EngineProcess:
    process: asyncio.subprocess.Process
    ready_file: Path
    lines: list[str] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None

    @classmethod
    def reading(cls, process: asyncio.subprocess.Process, ready_file: Path) -> EngineProcess:
        """``process``, its log (a stderr pipe) read from now on."""
        engine = cls(process, ready_file)
        engine._reader = asyncio.create_task(engine._read())
        return engine

    @property
    def agi_port(self) -> int:
        return int(self.ready_file.read_text().split()[0])

    @property
    def http_port(self) -> int:
        return int(self.ready_file.read_text().split()[1])

    def log(self) -> str:
        return "".join(self.lines)

    def worker_pids(self) -> dict[str, int]:
        """The latest pid each worker reported ready with."""
        return {m[1]: int(m[2]) for m in READY.finditer(self.log())}

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            async with self._changed:
                self.lines.append(line.decode(errors="replace"))
                self._changed.notify_all()
        async with self._changed:
            self.lines.append("<EOF>\n")
            self._changed.notify_all()

    async def wait_log(self, pattern: str, count: int = 1) -> list[re.Match[str]]:
        """Until ``pattern`` has appeared ``count`` times in the log (its matches)."""
        regex = re.compile(pattern)

        def found() -> bool:
            return len(regex.findall(self.log())) >= count or self.log().endswith("<EOF>\n")

        async with asyncio.timeout(DEADLINE_S), self._changed:
            await self._changed.wait_for(found)
        matches = list(regex.finditer(self.log()))
        assert len(matches) >= count, f"{pattern!r} x{count} not in the log:\n{self.log()}"
        return matches

    async def exit_code(self) -> int:
        async with asyncio.timeout(DEADLINE_S):
            code = await self.process.wait()
            if self._reader is not None:
                await self._reader
        return code


@contextlib.asynccontextmanager
async def engine_process(
    tmp_path: Path,
    args: Sequence[str],
    env: dict[str, str] | None = None,
    *,
    module: str = "ivr_engine",
) -> AsyncIterator[EngineProcess]:
    """``ivr-engine ARGS`` (``run`` gets ``--ready-file``); stopped and reaped on exit,
    workers included. ``module``: run instead of ``ivr_engine`` (a test's wrapper of it)."""
    ready = tmp_path / "ready"
    command = [sys.executable, "-m", module, *args]
    if "run" in args:
        command += ["--ready-file", str(ready)]
    environ = {
        **os.environ,
        "IVR_ENGINE_SPOOL_DIR": str(tmp_path / "spool"),
        "IVR_ENGINE_SOUNDS_DIR": str(REPO / "prompts/en"),
        **(env or {}),
    }
    process = await asyncio.create_subprocess_exec(
        *command, cwd=REPO, env=environ, stderr=asyncio.subprocess.PIPE
    )
    engine = EngineProcess.reading(process, ready)
    try:
        yield engine
    finally:
        workers = engine.worker_pids().values()
        if process.returncode is None:
            process.terminate()
        try:
            async with asyncio.timeout(STOP_DEADLINE_S):
                await process.wait()
        except TimeoutError:
            stuck = await _dump_tasks(engine, [process.pid, *workers])
        else:
            stuck = ""
        if process.returncode is None:  # still running (a reaped pid may be reused)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        for pid in workers:  # a failed test must not leave workers behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await engine.exit_code()
        if stuck:
            pytest.fail(stuck, pytrace=False)


async def _dump_tasks(engine: EngineProcess, pids: Sequence[int]) -> str:
    """SIGUSR1 (``ivr_engine/task_dump.py``) to each process: their log then says what
    every asyncio task awaits; the failure's text."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
    await asyncio.sleep(1.0)
    return f"not stopped {STOP_DEADLINE_S:.0f} s after SIGTERM; its log:\n{engine.log()[-20_000:]}"


async def process_gone(pid: int) -> None:
    """Until the process ``pid`` (not necessarily our child) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, gone.set)
    try:
        async with asyncio.timeout(DEADLINE_S):
            await gone.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


@dataclass
class HeldCall:
    """A call answered up to its first menu: the engine waits for the caller's key."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    first_read: str  # the EXEC "Read" line
    variables: dict[str, str] = field(default_factory=dict)
    uniqueid: str = ""  # the channel's agi_uniqueid: the call id the engine routes with

    @classmethod
    async def open(cls, port: int, caller: str) -> HeldCall:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        env = asterisk_env("127.0.0.1", port, caller_id=caller)
        writer.write(header_block(env))
        async with asyncio.timeout(DEADLINE_S):
            while not (line := (await reader.readline()).decode()).startswith('EXEC "Read"'):
                assert line, "the engine closed the call before its menu"
                writer.write(b"200 result=0\n")
        return cls(reader, writer, line, uniqueid=env["agi_uniqueid"])

    @property
    def prompts(self) -> list[str]:
        return shlex.split(self.first_read)[2].split(",")[1].split("&")

    @property
    def client_port(self) -> int:
        return int(self.writer.get_extra_info("sockname")[1])

    async def finish(self, keys: str = "1") -> dict[str, str]:
        """The caller presses ``keys`` (and types 8 digits when asked for a number) and the
        call goes on as Asterisk would answer, until the engine hangs up."""
        reply, max_digits = b"200 result=0\n", 1
        async with asyncio.timeout(DEADLINE_S):
            while True:
                self.writer.write(reply)
                line = (await self.reader.readline()).decode()
                if not line:
                    return self.variables
                reply, max_digits = self._answer(line.strip(), keys, max_digits)

    def _answer(self, line: str, keys: str, max_digits: int) -> tuple[bytes, int]:
        parts = shlex.split(line)
        if line.startswith('EXEC "Read"'):
            return b"200 result=0\n", int(parts[2].split(",")[2] or 1)
        if line.startswith("GET FULL VARIABLE"):
            typed = keys if max_digits == 1 else "12345678"
            return f"200 result=1 ({typed}|OK)\n".encode(), max_digits
        if line.startswith('EXEC "MSet"') or line.startswith("EXEC MSet"):
            self.variables.update(read_mset_options(parts[2]))
        elif line.startswith("SET VARIABLE"):
            self.variables[parts[2]] = parts[3] if len(parts) > 3 else ""
            return b"200 result=1\n", max_digits
        return b"200 result=0\n", max_digits

    async def closed_by_engine(self) -> bool:
        """True once the connection ends without another command (the engine is gone)."""
        async with asyncio.timeout(DEADLINE_S):
            try:
                return await self.reader.read() == b""
            except ConnectionResetError:
                return True

    def hang_up(self) -> None:
        self.writer.close()


def _tcp_inodes(local_port: int, remote_port: int | None) -> set[str]:
    """Inodes of the IPv4 TCP sockets on 127.0.0.1:``local_port``: connected to
    ``remote_port``, or listening when it is None."""
    local = f"0100007F:{local_port:04X}"
    found = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = row.split()
        if cols[1] != local:
            continue
        listening = cols[3] == "0A"  # TCP_LISTEN
        if listening if remote_port is None else cols[2] == f"0100007F:{remote_port:04X}":
            found.add(cols[9])
    return found


def _holders(inodes: set[str], pids: Sequence[int]) -> list[int]:
    """Which of ``pids`` hold a socket among ``inodes``."""
    names = {f"socket:[{inode}]" for inode in inodes}
    holders = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in names for fd in Path(f"/proc/{pid}/fd").iterdir()):
                holders.append(pid)
    return holders


def owner_pid(call: HeldCall, server_port: int, pids: Sequence[int]) -> int | None:
    """Which of ``pids`` holds the engine's end of ``call``'s TCP connection."""
    holders = _holders(_tcp_inodes(server_port, call.client_port), pids)
    return holders[0] if holders else None


def listening_pids(port: int, pids: Sequence[int]) -> list[int]:
    """Which of ``pids`` listen on 127.0.0.1:``port``."""
    return _holders(_tcp_inodes(port, None), pids)


async def calls_on_each(
    port: int, pids: Sequence[int], new_phone: Callable[[], str]
) -> dict[int, list[HeldCall]]:
    """Held calls placed until every pid in ``pids`` holds at least one (the kernel spreads
    connections by a hash of their addresses: 64 calls all on one of two workers would
    happen once in 2**63). ``{pid: [calls]}``; the calls that landed elsewhere are hung up."""
    held: dict[int, list[HeldCall]] = {pid: [] for pid in pids}
    for _ in range(64):
        call = await HeldCall.open(port, new_phone())
        owner = owner_pid(call, port, pids)
        if owner is None:
            call.hang_up()
            continue
        held[owner].append(call)
        if all(held.values()):
            return held
    raise AssertionError(f"64 calls did not reach every worker: {[len(v) for v in held.values()]}")
