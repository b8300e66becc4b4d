"""``ivr-engine run --workers 2``: real supervisor and worker processes on one FastAGI port,
a real SQLite timeline, the repo's menus and prompts.

Which worker serves a call is read from the kernel (the process holding the engine's end of
the call's TCP connection), so nothing is added to the engine for the tests."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from tests.component.engine_workers import (
    REPO,
    EngineProcess,
    calls_on_each,
    engine_process,
    listening_pids,
    process_gone,
)
from tests.component.test_engine_graceful_stop_processes import recorded_outcome
from tests.component.test_ivr_flow import labels
from tests.component.test_menu_reload import DEFAULT_ORDER, without_moving

pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="Linux only"),
]


@pytest.fixture
def menus_dir(tmp_path: Path) -> Path:
    target = tmp_path / "menus"
    shutil.copytree(REPO / "config/menus", target)
    return target


def run_args(url: str, *extra: str) -> list[str]:
    return ["--database-url", url, "run", "--agi-port", "0", "--http-port", "0", *extra]


@pytest.fixture
async def two_workers(
    sqlite_url: str, tmp_path: Path, menus_dir: Path
) -> AsyncIterator[EngineProcess]:
    env = {"IVR_ENGINE_MENUS_DIR": str(menus_dir)}
    async with engine_process(tmp_path, run_args(sqlite_url, "--workers", "2"), env) as engine:
        await engine.wait_log(r"engine ready: 2 workers")
        yield engine


def pids(engine: EngineProcess) -> list[int]:
    found = engine.worker_pids()
    return [found["worker 0"], found["worker 1"]]


async def test_two_workers_serve_calls_on_one_port(
    two_workers: EngineProcess, new_phone: Callable[[], str]
) -> None:
    workers = pids(two_workers)
    assert len(set(workers)) == 2 and two_workers.process.pid not in workers
    everyone = [two_workers.process.pid, *workers]  # the supervisor holds ports, never listens
    assert listening_pids(two_workers.agi_port, everyone) == workers
    assert listening_pids(two_workers.http_port, everyone) == workers[:1]  # worker 0 only
    held = await calls_on_each(two_workers.agi_port, workers, new_phone)
    for pid in workers:
        call = held[pid][0]
        assert labels(call.prompts) == DEFAULT_ORDER
        assert (await call.finish("1"))["IVR_OUTCOME"] == "routed"


async def test_the_esl_port_is_shared_by_the_workers_too(sqlite_url: str, tmp_path: Path) -> None:
    args = run_args(sqlite_url, "--workers", "2", "--esl-port", "0")
    async with engine_process(tmp_path, args) as engine:
        await engine.wait_log(r"engine ready: 2 workers")
        said = await engine.wait_log(r"FreeSWITCH outbound socket on 127\.0\.0\.1:(\d+)", 2)
        assert len({m[1] for m in said}) == 1  # port 0: one real port, the same for both
        everyone = [engine.process.pid, *pids(engine)]
        assert listening_pids(int(said[0][1]), everyone) == pids(engine)


async def test_a_killed_worker_is_restarted_and_the_other_workers_calls_go_on(
    two_workers: EngineProcess, new_phone: Callable[[], str]
) -> None:
    port = two_workers.agi_port
    first, second = pids(two_workers)
    held = await calls_on_each(port, [first, second], new_phone)
    os.kill(second, signal.SIGKILL)
    await two_workers.wait_log(
        rf"worker 1 \(pid {second}\) exited unexpectedly \(killed by SIGKILL"
    )
    assert await held[second][0].closed_by_engine()  # the dialplan's AGISTATUS=FAILURE
    assert (await held[first][0].finish("1"))["IVR_OUTCOME"] == "routed"  # not affected
    await two_workers.wait_log(r"worker 1 ready \(pid \d+\)", count=2)
    restarted = two_workers.worker_pids()["worker 1"]
    assert restarted != second
    again = await calls_on_each(port, [first, restarted], new_phone)
    assert (await again[restarted][0].finish("1"))["IVR_OUTCOME"] == "routed"


async def test_sighup_reloads_the_menus_in_every_worker(
    two_workers: EngineProcess, menus_dir: Path, new_phone: Callable[[], str]
) -> None:
    without_moving(menus_dir)
    two_workers.process.send_signal(signal.SIGHUP)
    reloaded = await two_workers.wait_log(r"\[(worker \d) pid \d+\] [\w.]+: menus reloaded", 2)
    assert {m[1] for m in reloaded} == {"worker 0", "worker 1"}
    held = await calls_on_each(two_workers.agi_port, pids(two_workers), new_phone)
    for calls in held.values():
        assert labels(calls[0].prompts) == [x for x in DEFAULT_ORDER if x != "moving"]
        calls[0].hang_up()


async def test_sigusr1_logs_what_each_processs_tasks_await(two_workers: EngineProcess) -> None:
    """The diagnosis for an engine that does not stop (``ivr_engine/task_dump.py``): sent to
    the supervisor, it goes on to every worker."""
    two_workers.process.send_signal(signal.SIGUSR1)
    dumps = await two_workers.wait_log(r"SIGUSR1: \d+ asyncio task\(s\)", 3)
    assert len(dumps) == 3
    log = two_workers.log()
    assert "fastagi" in log.lower() and "supervisor.py" in log  # the tasks, by name and file
    assert "engine ready" in log  # nobody died of the signal: SIGTERM still stops them all


async def test_sigterm_lets_every_workers_calls_finish_then_exits_0(
    two_workers: EngineProcess, new_phone: Callable[[], str]
) -> None:
    workers = pids(two_workers)
    held = await calls_on_each(two_workers.agi_port, workers, new_phone)
    two_workers.process.terminate()
    await two_workers.wait_log(r"stopping: SIGTERM to 2 worker")
    for pid in workers:  # each worker has stopped accepting and drains its calls
        assert (await held[pid][0].finish("1"))["IVR_OUTCOME"] == "routed"
    assert await two_workers.exit_code() == 0
    assert "all workers stopped" in two_workers.log()
    for pid in workers:
        await process_gone(pid)


async def test_a_second_ctrl_c_ends_every_workers_grace_at_once(
    sqlite_url: str, tmp_path: Path, menus_dir: Path, new_phone: Callable[[], str]
) -> None:
    """Ctrl-C signals the whole process group: the supervisor and each worker get SIGINT,
    then each worker the supervisor's SIGTERM too; that one Ctrl-C only starts the grace
    (a call still finishes as routed). A second Ctrl-C ends it at once: the supervisor
    passes it on, each worker tells its calls left they failed, writes them and exits.
    Before, the second signal was ignored by the supervisor and the workers alike: only
    SIGKILL cut a long grace short, and lost the calls not yet written."""
    env = {"IVR_ENGINE_MENUS_DIR": str(menus_dir), "IVR_ENGINE_SHUTDOWN_GRACE_S": "300"}
    async with engine_process(tmp_path, run_args(sqlite_url, "--workers", "2"), env) as engine:
        await engine.wait_log(r"engine ready: 2 workers")
        workers = pids(engine)
        held = await calls_on_each(engine.agi_port, workers, new_phone)

        def ctrl_c() -> None:
            for pid in (engine.process.pid, *workers):
                os.kill(pid, signal.SIGINT)

        ctrl_c()
        await engine.wait_log(r"stopping: SIGTERM to 2 worker")  # each: SIGINT, then SIGTERM
        await engine.wait_log(r"stopping: no new calls", count=2)
        assert (await held[workers[0]].pop().finish("1"))["IVR_OUTCOME"] == "routed"
        ctrl_c()
        left = [call for calls in held.values() for call in calls]
        async with asyncio.timeout(10):  # not the 300 s grace
            said = [(await call.reader.read()).decode() for call in left]
        assert said == ["SET VARIABLE IVR_OUTCOME failed\n"] * len(left)
        assert await engine.exit_code() == 0
        log = engine.log()
        assert "second signal (SIGINT): ending the grace now, 2 worker(s) told" in log
        assert len(re.findall(r"ending the grace now, \d+ call\(s\) cut", log)) == 2
        for call in left:  # written by the worker that cut it, not lost
            assert recorded_outcome(sqlite_url, call.uniqueid) == "failed"


async def test_workers_stop_when_the_supervisor_is_killed(two_workers: EngineProcess) -> None:
    workers = pids(two_workers)
    two_workers.process.kill()
    for pid in workers:  # SIGTERM from the kernel (PR_SET_PDEATHSIG): they drain and exit
        await process_gone(pid)


# --------------------------------------------------------------------------- refused at start


async def test_agents_in_process_memory_are_refused_with_two_workers(
    sqlite_url: str, tmp_path: Path
) -> None:
    env = {"IVR_ENGINE_AGENTS_FILE": str(REPO / "config/agents.yaml")}
    async with engine_process(tmp_path, run_args(sqlite_url, "--workers", "2"), env) as engine:
        assert await engine.exit_code() == 2
    assert "agent_state_url" in engine.log() and "workers is 2" in engine.log()
    assert "redis://" in engine.log() and not engine.ready_file.exists()


async def test_a_port_taken_by_another_program_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        args = [*run_args(sqlite_url, "--workers", "2"), "--http-port", port]
        async with engine_process(tmp_path, args) as engine:
            assert await engine.exit_code() == 2
    assert f"http_port: cannot listen on 127.0.0.1:{port}" in engine.log()
    assert "worker" not in engine.log().replace("--workers", "")


async def test_a_spool_dir_that_is_a_file_is_refused_before_any_worker_starts(
    sqlite_url: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool-file"
    spool.write_text("not a directory")
    env = {"IVR_ENGINE_SPOOL_DIR": str(spool)}
    async with engine_process(tmp_path, run_args(sqlite_url, "--workers", "2"), env) as engine:
        assert await engine.exit_code() == 2
    assert f"spool_dir: {spool}: is not a directory" in engine.log()
    assert "worker" not in engine.log().replace("--workers", "")


async def test_workers_that_cannot_start_stop_the_engine_non_zero(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Agent state in a Redis nobody answers on: each worker refuses to start."""
    env = {
        "IVR_ENGINE_AGENTS_FILE": str(REPO / "config/agents.yaml"),
        "IVR_ENGINE_AGENT_STATE_URL": "redis://127.0.0.1:1/0",
    }
    async with engine_process(tmp_path, run_args(sqlite_url, "--workers", "2"), env) as engine:
        assert await engine.exit_code() != 0
    assert "engine not started: worker" in engine.log()
    assert not engine.ready_file.exists()
    await asyncio.gather(*(process_gone(pid) for pid in engine.worker_pids().values()))


async def test_a_second_engine_on_the_same_ports_is_refused(
    two_workers: EngineProcess, sqlite_url: str, tmp_path: Path
) -> None:
    """SO_REUSEPORT would let it join the port group and take half of the calls."""
    ports = ["--agi-port", str(two_workers.agi_port), "--http-port", str(two_workers.http_port)]
    second = tmp_path / "second"
    second.mkdir()
    args = [*run_args(sqlite_url, "--workers", "2"), *ports]
    async with engine_process(second, args) as engine:
        assert await engine.exit_code() == 2
    assert f"agi_port: cannot listen on 127.0.0.1:{two_workers.agi_port}" in engine.log()
    assert "another ivr-engine" in engine.log()
    assert not engine.ready_file.exists()


@pytest.mark.postgres
async def test_workers_refusing_a_configuration_together_make_exit_code_2(
    new_pg_database: Callable[[], Coroutine[Any, Any, str]], tmp_path: Path
) -> None:
    """Both workers refuse an un-migrated PostgreSQL at once. The exit code came from their
    exit statuses, which Python 3.11's child watcher often misreported as 255."""
    url = await new_pg_database()
    async with engine_process(tmp_path, run_args(url, "--workers", "2")) as engine:
        assert await engine.exit_code() == 2
    assert "run `ivr-engine migrate`" in engine.log()
    assert engine.log().count("refused the configuration") == 2
