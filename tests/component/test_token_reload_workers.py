"""The supervisor's side of a token reload with ``--workers``: the new settings go down each
ready worker's stdin (``Worker.send_settings``), and the log says how many got them: a line
is "sent" once it is in the pipe (written and drained), "queued" when the worker has not read
enough of the pipe in time (it still gets it), "not sent" when its stdin is gone.

The workers here are small stand-in processes with the real pipes (a real engine worker reads
its stdin as they do, ``child.py``; ``test_token_reload_processes.py`` runs real ones): one
that reads every line, one that closed its stdin, one that reads only when told (SIGUSR1)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from asyncio.subprocess import PIPE, Process
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import yaml

from ivr_engine.settings import Settings
from ivr_engine.token_reload import SettingsSource
from ivr_engine.workers import worker_process
from ivr_engine.workers.role import WorkerRole
from ivr_engine.workers.supervisor import Supervisor
from ivr_engine.workers.worker_process import Worker

TOKEN_A = "token-a-" + "a" * 40
TOKEN_B = "token-b-" + "b" * 40

READS = "import sys\nfor line in sys.stdin.buffer:\n    print(len(line), flush=True)\n"
CLOSED = "import os, time\nos.close(0)\nprint('closed', flush=True)\ntime.sleep(60)\n"
READS_WHEN_TOLD = (
    "import signal, sys\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
    "print('up', flush=True)\n"
    "signal.sigwait({signal.SIGUSR1})\n"
    "for line in sys.stdin.buffer:\n    print(len(line), flush=True)\n"
)

Spawn = Callable[[str], Awaitable[Process]]


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    started: list[Process] = []

    async def start(script: str) -> Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, stdin=PIPE, stdout=PIPE
        )
        started.append(process)
        if script != READS:  # it says when it is set
            assert process.stdout is not None
            async with asyncio.timeout(10):
                await process.stdout.readline()
        return process

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
        if process.stdin is not None:
            process.stdin.close()
        await process.wait()


async def next_line(process: Process) -> bytes:
    assert process.stdout is not None
    async with asyncio.timeout(10):
        return (await process.stdout.readline()).strip()


async def test_a_line_in_the_pipe_is_sent(spawn: Spawn) -> None:
    worker = Worker(WorkerRole(0, 2), process=await spawn(READS), ready=True)
    assert await worker.send_settings("x" * 100) is True
    assert worker.process is not None and await next_line(worker.process) == b"101"


async def test_a_closed_stdin_is_not_sent(spawn: Spawn, caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker(WorkerRole(1, 2), process=await spawn(CLOSED), ready=True)
    assert await worker.send_settings("x" * 100) is False
    assert "worker 1 (pid" in caplog.text and "new settings not sent" in caplog.text


async def test_a_worker_that_does_not_read_in_time_has_the_line_queued_not_lost(
    spawn: Spawn, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than the pipe and the transport's high-water mark hold: the drain waits for the
    worker, and gives up at the deadline with the rest of the line still buffered."""
    monkeypatch.setattr(worker_process, "SEND_TIMEOUT_S", 0.2)
    process = await spawn(READS_WHEN_TOLD)
    worker = Worker(WorkerRole(0, 2), process=process, ready=True)
    text = "x" * 300_000
    assert await worker.send_settings(text) is False
    assert "new settings queued, not yet read by worker 0" in caplog.text
    assert "not sent" not in caplog.text
    process.send_signal(signal.SIGUSR1)  # it reads now: the whole line arrives
    assert await next_line(process) == str(len(text) + 1).encode()


def _supervisor(tmp_path: Path, *workers: Worker) -> tuple[Supervisor, Path]:
    config = tmp_path / "engine.yaml"
    base = {"database_url": f"sqlite:///{tmp_path}/t.db"}
    config.write_text(yaml.safe_dump({**base, "api_tokens": [TOKEN_A]}))
    source = SettingsSource(config, environ={})
    supervisor = Supervisor(source.load(), source=source)
    supervisor._ports = {"agi_port": 4573, "http_port": 8080}
    supervisor.workers = list(workers)
    config.write_text(yaml.safe_dump({**base, "api_tokens": [TOKEN_B]}))
    return supervisor, config


async def test_the_supervisor_logs_how_many_workers_the_settings_reached(
    spawn: Spawn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reads = await spawn(READS)
    workers = (
        Worker(WorkerRole(0, 3), process=reads, ready=True),
        Worker(WorkerRole(1, 3), process=await spawn(CLOSED), ready=True),
        Worker(WorkerRole(2, 3)),  # restarting: not ready
    )
    supervisor, _ = _supervisor(tmp_path, *workers)
    assert supervisor.source is not None
    with caplog.at_level(logging.INFO):
        await supervisor._reload_tokens(supervisor.source)
    summary = [r for r in caplog.records if "API tokens reloaded" in r.getMessage()]
    assert len(summary) == 1, caplog.text
    assert "sent to 1 of 2 worker(s); 1 not ready: each gets them at its start" in (
        summary[0].getMessage()
    )
    assert summary[0].levelno == logging.WARNING
    assert "worker 1 (pid" in caplog.text and "new settings not sent" in caplog.text
    assert await next_line(reads) == str(len(supervisor._worker_settings) + 1).encode()
    assert TOKEN_B not in caplog.text


class _FailingSource(SettingsSource):
    """Reading fails in a way no check expects (no real file does, since ``load_yaml`` turns
    every constructor failure into a YAML error): the handler's last line of defence."""

    def load(self) -> Settings:
        raise TypeError(f"surprise, with {TOKEN_B} in it")


async def test_any_exception_of_the_supervisors_reload_is_a_refused_reload(
    spawn: Spawn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor, config = _supervisor(
        tmp_path, Worker(WorkerRole(0, 1), process=await spawn(READS), ready=True)
    )
    running = supervisor.settings
    with caplog.at_level(logging.INFO):
        await supervisor._reload_tokens(_FailingSource(config, environ={}))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        e for e in errors if e.startswith("API tokens NOT reloaded, the ones in force stay: ")
    ]
    assert len(errors) == 1 and "unexpected TypeError (in " in errors[0], caplog.text
    assert supervisor.settings is running
    assert TOKEN_B[:12] not in caplog.text
