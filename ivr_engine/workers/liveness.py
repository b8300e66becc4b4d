"""How the supervisor sees that a worker's event loop runs: its beats (``BeatPipe``).

A worker's loop watchdog (``loop_watchdog.py``) ends a worker whose loop is stuck, but a
worker frozen whole (``SIGSTOP``, a C call that holds the GIL) cannot run it: its listening
socket still takes calls that hear silence. Each worker gets the write end of a pipe and
writes one byte per beat (``child.beat_to``); the supervisor reads the other end on its loop
and ``silent_workers`` names the ready workers with no beat for ``loop_watchdog_s``: the
supervisor kills them (SIGKILL: it ends a stopped process too) and restarts them as after
any death.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

READ_SIZE = 4096


@dataclass
class BeatPipe:
    """The supervisor's end of one worker process's beat pipe; ``write_fd`` goes to the
    worker (closed here once it runs: ``handed_over``)."""

    read_fd: int
    write_fd: int | None
    last_beat: float = field(default_factory=time.monotonic)
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def open(cls) -> BeatPipe:
        read_fd, write_fd = os.pipe()  # both non-inheritable: write_fd goes by pass_fds
        os.set_blocking(read_fd, False)
        return cls(read_fd, write_fd)

    def handed_over(self) -> None:
        """The worker holds the write end now: ours closed (its exit then ends the pipe)."""
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None

    def listen(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.read_fd, self._read)

    def _read(self) -> None:
        try:
            data = os.read(self.read_fd, READ_SIZE)
        except BlockingIOError:
            return
        if data:
            self.last_beat = time.monotonic()
        else:  # the worker is gone: its exit is seen by the supervisor's watch
            self._stop_listening()

    def reset(self, now: float) -> None:
        self.last_beat = now

    def silent_for(self, now: float) -> float:
        return now - self.last_beat

    def _stop_listening(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.read_fd)
            self._loop = None

    def close(self) -> None:
        self._stop_listening()
        self.handed_over()
        with contextlib.suppress(OSError):
            os.close(self.read_fd)


def silent_workers(
    beats: Iterable[tuple[str, BeatPipe]], now: float, timeout_s: float
) -> list[tuple[str, float]]:
    """The names of the workers with no beat for over ``timeout_s``, and for how long."""
    return [
        (name, pipe.silent_for(now)) for name, pipe in beats if pipe.silent_for(now) > timeout_s
    ]
