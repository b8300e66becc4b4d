"""The supervisor's child watcher: how its event loop learns that a worker process exited
(on Python 3.11, from a pidfd per child instead of a ``waitpid`` thread)."""

from __future__ import annotations

import asyncio
import os
import sys


def watch_children_by_pidfd() -> None:
    """Python 3.11's default child watcher (a thread per child, ``waitpid``) reported a
    worker's exit status as 255 ("Unknown child process") in 7 of 10 runs where two workers
    exited at once; with a pidfd per child (Linux 5.3+, 3.12's default) in none of 10 by
    hand, but still now and then under the test runner, so what a worker refuses it also
    says on its pipe (``REFUSED``) and exit statuses only go into the log."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
