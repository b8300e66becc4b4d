"""The event loop's watchdog (setting ``loop_watchdog_s``): a stuck loop becomes a dead process.

A process whose loop is stuck (a call that blocks it, a bug spinning in a callback) still has
its listening socket: the kernel accepts Asterisk's FastAGI connection, Asterisk sends the
AGI environment and waits for a command with no timeout, and the caller hears silence. Here
the loop beats (``beat``: a timer callback every ``beat_every``) and a daemon OS thread checks
the beats; when none came for ``timeout_s`` it logs CRITICAL with the stack the loop thread is
in, then ends the process at once (``os._exit(EXIT_LOOP_STUCK)``): the kernel closes every
socket, each call in progress sees EOF (Asterisk: ``AGISTATUS=FAILURE``, the dialplan's static
menu), and a new call is refused (the dialplan's ``ivr-fail``) until the supervisor or service
manager starts the engine again.

Each beat also calls ``on_beat`` (``sd_notify`` ``WATCHDOG=1``, a worker's beat to its
supervisor): a process frozen whole (``SIGSTOP``, a C call that holds the GIL) cannot run this
thread either, so the one watching from outside must also see the beats stop.

Armed once the engine takes calls (a start-up can block for long: migrations, warm-ups) and
until the process ends: the graceful stop is async, so the loop keeps beating through it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

EXIT_LOOP_STUCK = 70  # EX_SOFTWARE: the event loop stopped beating
BEATS_PER_TIMEOUT = 5  # a late beat or two is no alarm
STACK_LIMIT = 30  # frames of the loop thread's stack in the CRITICAL record
LOG_WAIT_S = 1.0  # for the CRITICAL record to be written, then the process exits anyway


def beat_interval(timeout_s: float) -> float:
    """How often the loop beats for a ``timeout_s`` watchdog (``loop_watchdog_s``)."""
    return timeout_s / BEATS_PER_TIMEOUT


def stuck_for(last_beat: float, now: float, timeout_s: float) -> float | None:
    """Seconds since the last beat if that is over ``timeout_s``, else None."""
    silent = now - last_beat
    return silent if silent > timeout_s else None


def loop_thread_stack(thread_id: int) -> str:
    """Where the thread ``thread_id`` is now, innermost call last."""
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return "(the loop's thread has no frame)"
    return "".join(traceback.format_stack(frame, limit=STACK_LIMIT)).rstrip()


class LoopWatchdog:
    """``start()`` from the loop's thread once the engine takes calls; ``stop()`` when the
    process ends on its own. ``on_beat``: called on the loop at each beat (must not block;
    an exception is logged and the beat goes on). ``exit``: what ends the process."""

    def __init__(
        self,
        timeout_s: float,
        *,
        on_beat: Sequence[Callable[[], None]] = (),
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        self.timeout_s = timeout_s
        self.interval = beat_interval(timeout_s)
        self.on_beat = list(on_beat)
        self._exit = exit
        self._last_beat = time.monotonic()
        self._stopped = threading.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._loop_thread = threading.get_ident()

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._beat(asyncio.get_running_loop())
        thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        thread.start()
        log.info("event-loop watchdog armed: the process exits if its loop stops for %.1f s",
                 self.timeout_s)  # fmt: skip

    def stop(self) -> None:
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        self._last_beat = time.monotonic()
        for call in self.on_beat:
            try:
                call()
            except Exception as exc:  # a beat's report must not stop the beats
                log.warning("loop watchdog: beat report %r failed: %r", call, exc)
        if not self._stopped.is_set():
            self._timer = loop.call_later(self.interval, self._beat, loop)

    def _watch(self) -> None:
        while not self._stopped.wait(self.interval):
            silent = stuck_for(self._last_beat, time.monotonic(), self.timeout_s)
            if silent is not None and not self._stopped.is_set():
                self._fire(silent)
                return

    def _fire(self, silent: float) -> None:
        """Log, then exit: the record is written from another thread, waited for at most
        ``LOG_WAIT_S`` (the stuck loop may hold a handler's lock, on a full stderr pipe)."""
        stack = loop_thread_stack(self._loop_thread)
        said = threading.Thread(target=self._say, args=(silent, stack), daemon=True)
        said.start()
        said.join(LOG_WAIT_S)
        self._exit(EXIT_LOOP_STUCK)

    def _say(self, silent: float, stack: str) -> None:
        log.critical(
            "event loop stuck: no beat for %.1f s (loop_watchdog_s %.1f); exiting now with "
            "code %d so every call's socket closes (the dialplan's static menu) and the "
            "engine is restarted. The loop's thread is in:\n%s",
            silent, self.timeout_s, EXIT_LOOP_STUCK, stack,
        )  # fmt: skip
        for handler in logging.getLogger().handlers:
            handler.flush()
