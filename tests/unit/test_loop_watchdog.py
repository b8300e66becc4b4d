"""``LoopWatchdog`` on a real loop in this process, blocked by the test itself; the exit is
recorded instead of taken. Also the setting and the supervisor's silence rule."""

from __future__ import annotations

import asyncio
import logging
import os
import threading

import pytest

from ivr_engine.domain.errors import ConfigError
from ivr_engine.loop_watchdog import EXIT_LOOP_STUCK, LoopWatchdog, stuck_for
from ivr_engine.settings import load_settings
from ivr_engine.workers.liveness import BeatPipe, silent_workers
from ivr_engine.workers.worker_process import describe_exit

BOUND_S = 30.0  # a bounded wait for an event, never a measure of speed


class Exits:
    def __init__(self) -> None:
        self.codes: list[int] = []
        self.taken = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.taken.set()


def blocking_callback(exits: Exits) -> None:
    """A callback that blocks the loop until the watchdog exits (or the bound)."""
    exits.taken.wait(BOUND_S)


async def test_a_blocked_loop_is_logged_with_its_stack_then_the_process_exits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exits = Exits()
    watchdog = LoopWatchdog(1.0, exit=exits)
    caplog.set_level(logging.CRITICAL, logger="ivr_engine.loop_watchdog")
    watchdog.start()
    try:
        asyncio.get_running_loop().call_soon(blocking_callback, exits)
        await asyncio.sleep(0)  # the callback runs: the loop is stuck in it
        await asyncio.sleep(0)
    finally:
        watchdog.stop()
    assert exits.codes == [EXIT_LOOP_STUCK]
    [record] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert "event loop stuck: no beat for" in record.getMessage()
    assert "in blocking_callback" in record.getMessage()  # the loop thread's innermost frame


async def test_each_beat_reports_and_a_failing_report_does_not_stop_the_beats() -> None:
    exits = Exits()
    reported = asyncio.Event()
    count = 0

    def failing() -> None:
        raise OSError("gone")

    def counting() -> None:
        nonlocal count
        count += 1
        if count == 3:
            reported.set()

    watchdog = LoopWatchdog(1.0, on_beat=[failing, counting], exit=exits)
    watchdog.start()
    try:
        async with asyncio.timeout(BOUND_S):
            await reported.wait()
    finally:
        watchdog.stop()
    assert exits.codes == []


def test_stuck_for_is_the_silence_only_past_the_timeout() -> None:
    assert stuck_for(10.0, 14.0, 5.0) is None
    assert stuck_for(10.0, 15.0, 5.0) is None
    assert stuck_for(10.0, 15.5, 5.0) == 5.5


def test_loop_watchdog_s_is_off_or_at_least_a_second() -> None:
    assert load_settings(environ={}).loop_watchdog_s == 5.0
    assert load_settings(environ={"IVR_ENGINE_LOOP_WATCHDOG_S": "0"}).loop_watchdog_s == 0
    with pytest.raises(ConfigError, match=r"loop_watchdog_s.*must be 0 \(off\) or at least 1"):
        load_settings(environ={"IVR_ENGINE_LOOP_WATCHDOG_S": "0.5"})


async def test_the_supervisor_hears_beats_and_names_the_silent_workers() -> None:
    pipe = BeatPipe.open()
    assert pipe.write_fd is not None
    write_fd = os.dup(pipe.write_fd)  # the worker's end
    pipe.handed_over()
    pipe.listen()
    try:
        pipe.reset(0.0)
        assert silent_workers([("worker 1", pipe)], 10.0, 5.0) == [("worker 1", 10.0)]
        os.write(write_fd, b".")
        for _ in range(10_000):  # loop turns until the reader has run
            if pipe.last_beat != 0.0:
                break
            await asyncio.sleep(0)
        assert silent_workers([("worker 1", pipe)], pipe.last_beat + 1.0, 5.0) == []
    finally:
        os.close(write_fd)
        pipe.close()


def test_the_supervisor_says_why_a_worker_exited_with_the_watchdogs_code() -> None:
    said = describe_exit(EXIT_LOOP_STUCK)
    assert said.startswith("exit code 70") and "event loop was stuck" in said
    assert describe_exit(1) == "exit code 1"
