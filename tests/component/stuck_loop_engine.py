"""Test-only: ``python -m tests.component.stuck_loop_engine ARGS`` is ``ivr-engine ARGS``
whose event loop gets stuck on ``SIGWINCH`` (a Python-level handler, run on the main thread,
the loop's, that blocks it as a buggy callback would). Nothing of it is in ``ivr_engine``."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

from ivr_engine.cli import main

NEVER = threading.Event()


def block_the_loop(signum: int, frame: FrameType | None) -> None:
    NEVER.wait()  # blocks the loop's thread for good: only the watchdog ends this process


if __name__ == "__main__":
    signal.signal(signal.SIGWINCH, block_the_loop)
    sys.exit(main(sys.argv[1:]))
