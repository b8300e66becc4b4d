"""The loop watchdog with real engine processes: a stuck event loop, or a worker frozen whole,
becomes a closed socket (the caller's FastAGI connection sees EOF, so Asterisk's AGI returns
and the dialplan plays its static menu) and, under ``--workers``, a new worker. Before, the
kernel went on accepting calls for the stuck process and each one waited in silence.

The loop is blocked by ``tests/component/stuck_loop_engine.py`` (``ivr-engine`` whose loop
blocks on SIGWINCH); a frozen worker is ``SIGSTOP``ped. Waits are bounded waits for events.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from ivr_engine.loop_watchdog import EXIT_LOOP_STUCK
from tests.component.engine_workers import (
    DEADLINE_S,
    HeldCall,
    calls_on_each,
    engine_process,
)

pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="Linux only"),
]

WATCHDOG_ENV = {"IVR_ENGINE_LOOP_WATCHDOG_S": "1"}


def run_args(url: str, *extra: str) -> list[str]:
    return ["--database-url", url, "run", "--agi-port", "0", "--http-port", "0", *extra]


async def test_a_blocked_event_loop_ends_the_process_and_its_calls_see_eof(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    module = "tests.component.stuck_loop_engine"
    async with engine_process(tmp_path, run_args(sqlite_url), WATCHDOG_ENV, module=module) as eng:
        await eng.wait_log(r"event-loop watchdog armed")
        port = int((await eng.wait_log(r"engine ready: FastAGI 127\.0\.0\.1:(\d+)"))[0][1])
        in_menu = await HeldCall.open(port, new_phone())  # the engine waits for the caller
        eng.process.send_signal(signal.SIGWINCH)  # the loop blocks for good
        assert await in_menu.closed_by_engine()  # EOF: AGISTATUS=FAILURE, not silence
        assert await eng.exit_code() == EXIT_LOOP_STUCK
        log = eng.log()
        assert "CRITICAL" in log and "event loop stuck: no beat for" in log
        assert "in block_the_loop" in log  # the loop thread's stack, down to the blocker


async def test_a_frozen_worker_is_killed_and_replaced_and_new_calls_are_served(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    args = run_args(sqlite_url, "--workers", "2")
    async with engine_process(tmp_path, args, WATCHDOG_ENV) as engine:
        await engine.wait_log(r"engine ready: 2 workers")
        port, pids = engine.agi_port, engine.worker_pids()
        first, second = pids["worker 0"], pids["worker 1"]
        held = await calls_on_each(port, [first, second], new_phone)
        os.kill(second, signal.SIGSTOP)  # frozen whole: its own watchdog thread cannot run
        await engine.wait_log(rf"worker 1 \(pid {second}\): no beat of its event loop")
        await engine.wait_log(rf"worker 1 \(pid {second}\) exited unexpectedly \(killed by SIGKILL")
        assert await held[second][0].closed_by_engine()  # EOF: the dialplan's static menu
        assert (await held[first][0].finish("1"))["IVR_OUTCOME"] == "routed"  # not affected
        await engine.wait_log(r"worker 1 ready \(pid \d+\)", count=2)
        restarted = engine.worker_pids()["worker 1"]
        assert restarted != second
        again = await calls_on_each(port, [first, restarted], new_phone)
        assert (await again[restarted][0].finish("1"))["IVR_OUTCOME"] == "routed"
        assert engine.worker_pids()["worker 0"] == first  # beating: left alone


async def received(sock: socket.socket, count: int) -> list[tuple[str, int]]:
    """``count`` datagrams from ``sock`` with the sender's pid (SCM_CREDENTIALS)."""
    loop = asyncio.get_running_loop()
    got: list[tuple[str, int]] = []
    space = socket.CMSG_SPACE(12)  # struct ucred: pid, uid, gid
    async with asyncio.timeout(DEADLINE_S):
        while len(got) < count:
            ready = asyncio.Event()
            loop.add_reader(sock.fileno(), ready.set)
            try:
                await ready.wait()
            finally:
                loop.remove_reader(sock.fileno())
            data, ancillary, _, _ = sock.recvmsg(4096, space)
            pid = int.from_bytes(ancillary[0][2][:4], "little") if ancillary else -1
            got.append((data.decode(), pid))
    return got


def notify_socket(tmp_path: Path) -> tuple[socket.socket, dict[str, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.setblocking(False)
    path = tmp_path / "notify"
    sock.bind(str(path))
    return sock, {**WATCHDOG_ENV, "NOTIFY_SOCKET": str(path)}


async def until(sock: socket.socket, state: str) -> list[tuple[str, int]]:
    """Datagrams up to and including the first ``state`` one."""
    got: list[tuple[str, int]] = []
    while not got or got[-1][0] != state:
        got += await received(sock, 1)
    return got


async def test_sd_notify_ready_then_watchdog_beats_then_stopping(
    sqlite_url: str, tmp_path: Path
) -> None:
    sock, env = notify_socket(tmp_path)
    with sock:
        async with engine_process(tmp_path, run_args(sqlite_url), env) as engine:
            before_ready = await until(sock, "READY=1")
            assert {state for state, _ in before_ready} <= {"WATCHDOG=1", "READY=1"}
            beats = await received(sock, 2)
            assert [state for state, _ in beats] == ["WATCHDOG=1", "WATCHDOG=1"]
            engine.process.send_signal(signal.SIGTERM)
            await until(sock, "STOPPING=1")
            assert await engine.exit_code() == 0
        senders = {pid for _, pid in [*before_ready, *beats]}
        assert senders == {engine.process.pid}


async def test_under_workers_only_the_supervisor_notifies_systemd(
    sqlite_url: str, tmp_path: Path
) -> None:
    """systemd's default ``NotifyAccess=main`` drops what other processes send."""
    sock, env = notify_socket(tmp_path)
    with sock:
        async with engine_process(tmp_path, run_args(sqlite_url, "--workers", "2"), env) as eng:
            said = await until(sock, "READY=1")
            await eng.wait_log(r"engine ready: 2 workers")  # READY=1 came once all were up
            said += await received(sock, 2)
            assert [state for state, _ in said[-2:]] == ["WATCHDOG=1", "WATCHDOG=1"]
            assert {pid for _, pid in said} == {eng.process.pid}


async def test_the_watchdog_does_not_fire_during_a_graceful_stop_longer_than_it(
    sqlite_url: str, tmp_path: Path, new_phone: Callable[[], str]
) -> None:
    """The drain is async: the loop beats on through a grace longer than the watchdog's
    bound (a beat kept by a task the stop cancels would end the stop with code 70)."""
    env = {**WATCHDOG_ENV, "IVR_ENGINE_SHUTDOWN_GRACE_S": "3"}
    async with engine_process(tmp_path, run_args(sqlite_url), env) as engine:
        await engine.wait_log(r"event-loop watchdog armed")
        port = int((await engine.wait_log(r"engine ready: FastAGI 127\.0\.0\.1:(\d+)"))[0][1])
        stuck = await HeldCall.open(port, new_phone())  # its caller never answers
        engine.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE_S):
            said = (await stuck.reader.read()).decode()
        assert said == "SET VARIABLE IVR_OUTCOME failed\n"  # the grace ended, not the process
        assert await engine.exit_code() == 0
        assert "event loop stuck" not in engine.log()
