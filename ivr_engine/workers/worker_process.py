"""One worker process as the supervisor runs it: its state and restart back-off (``Worker``),
its start, and how it failed or exited.

A worker is started running the very ``ivr_engine`` the supervisor runs (``child.py``), with
the settings written to its stdin as one line (the pipe stays open: after a token reload the
supervisor sends the new settings there, ``send_settings``); with a load ledger
(``load_ledger.py``) it also gets its end of a Unix socket to it. It is up once it says
``ready`` on its stdout; a configuration it refuses (``REFUSED``), an exit, or no answer
within ``READY_TIMEOUT_S`` is a ``WorkerFailed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from asyncio.subprocess import PIPE
from dataclasses import dataclass
from pathlib import Path

import ivr_engine
from ivr_engine.loop_watchdog import EXIT_LOOP_STUCK
from ivr_engine.workers.child import EXIT_CONFIG, NO_LINK, REFUSED
from ivr_engine.workers.liveness import BeatPipe
from ivr_engine.workers.load_ledger import LoadLedger
from ivr_engine.workers.role import WorkerRole

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0  # a worker's start: menus, prompts, database warm-up, agents
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
HEALTHY_AFTER_S = 60.0  # up this long: the next death starts the back-off again
SEND_TIMEOUT_S = 2.0  # new settings down a worker's stdin


class WorkerFailed(Exception):
    def __init__(self, role: WorkerRole, returncode: int | None, why: str) -> None:
        super().__init__(f"{role.name} {why}")
        self.returncode = returncode


@dataclass
class Worker:
    role: WorkerRole
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    started: float = 0.0
    deaths: int = 0  # in a row, each within HEALTHY_AFTER_S of its start
    beats: BeatPipe | None = None  # its loop's beats (``liveness.py``); None: not watched

    async def send_settings(self, text: str) -> bool:
        """The settings (one JSON line) down the worker's stdin; True once the line is
        written and drained (in the pipe, or in the transport's buffer below its ~64 KiB
        high-water mark: a worker that stopped reading is noticed only once the kernel's
        pipe and that buffer are full; the worker reads the line when its loop gets to it).
        False, logged: the worker is gone or its stdin closed (not sent), or it has not read
        enough of the pipe within ``SEND_TIMEOUT_S`` (queued: it still gets the line, and
        any later one after it, once it reads). A worker started later gets the settings at
        its start."""
        process = self.process
        name = self.role.name
        if process is None or process.stdin is None or process.returncode is not None:
            log.warning("%s: new settings not sent: not running (its start gets them)", name)
            return False
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                process.stdin.write(text.encode() + b"\n")
                await process.stdin.drain()
        except TimeoutError:  # the line is in the transport's buffer: it goes on being sent
            log.warning(
                "%s (pid %d): new settings queued, not yet read by %s after %.0f s",
                name, process.pid, name, SEND_TIMEOUT_S,
            )  # fmt: skip
            return False
        except (BrokenPipeError, ConnectionResetError) as exc:
            log.error("%s (pid %d): new settings not sent: %r", name, process.pid, exc)
            return False
        return True

    def backoff_after_death(self, now: float) -> float:
        self.ready = False
        self.deaths = 1 if now - self.started >= HEALTHY_AFTER_S else self.deaths + 1
        return float(min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (self.deaths - 1)))


def describe_exit(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    if returncode == EXIT_LOOP_STUCK:
        return f"exit code {returncode}: its event loop was stuck, see its CRITICAL record"
    return f"exit code {returncode}"


async def start_worker(
    worker: Worker,
    worker_settings: str,
    ledger: LoadLedger | None,
    stopping: asyncio.Event,
    *,
    watch_beats: bool = False,
) -> None:
    """Start the worker's process; return once it says it takes calls. ``watch_beats``:
    give it a beat pipe (``worker.beats``, read from its start on)."""
    role = worker.role
    if worker.beats is not None:
        worker.beats.close()
    worker.beats = BeatPipe.open() if watch_beats else None
    try:
        process = await spawn_worker(role, ledger, worker.beats)
    finally:
        if worker.beats is not None:
            worker.beats.handed_over()
    if worker.beats is not None:
        worker.beats.listen()
    worker.process, worker.started = process, time.monotonic()
    if stopping.is_set():
        process.terminate()
    assert process.stdin is not None and process.stdout is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(worker_settings.encode() + b"\n")  # kept open: send_settings
        await process.stdin.drain()
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            line = (await process.stdout.readline()).decode().split()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise WorkerFailed(role, None, f"not ready after {READY_TIMEOUT_S:.0f} s") from None
    if line[:1] == [REFUSED]:
        await process.wait()
        raise WorkerFailed(role, EXIT_CONFIG, "refused the configuration (see above)")
    if line[:1] != ["ready"]:
        with contextlib.suppress(ProcessLookupError):
            process.kill()  # it has exited, or (a bug) wrote something else first
        code = await process.wait()
        raise WorkerFailed(role, code, f"exited before it was ready ({describe_exit(code)})")
    worker.ready = True
    if worker.beats is not None:
        worker.beats.reset(time.monotonic())  # silent from now on: watched (supervisor)
    log.info("%s ready (pid %d)", role.name, process.pid)


async def spawn_worker(
    role: WorkerRole, ledger: LoadLedger | None, beats: BeatPipe | None = None
) -> asyncio.subprocess.Process:
    """The worker's process; with a load ledger, its channel to it passed down; with
    ``beats``, the write end of its beat pipe."""
    command = [sys.executable, "-P", "-m", "ivr_engine.workers.child"]  # -P: not the cwd
    command += [str(role.index), str(role.count), str(os.getpid())]
    env = same_code_environment()
    beat_fds = () if beats is None or beats.write_fd is None else (beats.write_fd,)
    beat_arg = str(beat_fds[0]) if beat_fds else NO_LINK
    if ledger is None:
        return await asyncio.create_subprocess_exec(
            *command, NO_LINK, beat_arg, stdin=PIPE, stdout=PIPE, env=env, pass_fds=beat_fds
        )
    ours, theirs = LoadLedger.channel()
    with theirs:  # the worker's once it runs: its exit ends the channel
        fd = theirs.fileno()
        try:
            process = await asyncio.create_subprocess_exec(
                *command, str(fd), beat_arg, stdin=PIPE, stdout=PIPE, env=env,
                pass_fds=(fd, *beat_fds),
            )  # fmt: skip
        except BaseException:
            ours.close()
            raise
    ledger.attach(role, ours)
    return process


def same_code_environment() -> dict[str, str]:
    """The environment for a worker: it imports the very ``ivr_engine`` this process runs;
    without ``NOTIFY_SOCKET``: the supervisor is the process systemd watches (``sd_notify``)."""
    root = str(Path(ivr_engine.__file__).resolve().parents[1])
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {key: value for key, value in os.environ.items() if key != "NOTIFY_SOCKET"}
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}
