"""Stopping background tasks for sure: ``cancel_and_wait``.

A cancellation can be lost. On Python 3.11, ``asyncio.wait_for`` returns its inner result
instead of raising ``CancelledError`` when the cancel arrives just as that result lands
(CPython gh-86296; 3.12 rewrote ``wait_for`` on ``asyncio.timeout``), and redis-py sends
every command through ``wait_for`` when the client has a ``socket_timeout``. Measured on
3.11.7 with redis-py 8.1: a task cancelled 6 to 23 loop turns into its first ``HGET``
finished the command and went on as if never cancelled. A task that loops (an AMI event
reader that checks agents in Redis, a poller) then carries on, and ``cancel(); await task``
waits for it forever: seen as an engine worker that never exited after SIGTERM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RECANCEL_EVERY_S = 0.25  # longer than the cleanup our tasks do once cancelled (no network)


async def cancel_and_wait(
    tasks: Iterable[asyncio.Future[Any]], *, recancel_every_s: float = RECANCEL_EVERY_S
) -> None:
    """Cancel ``tasks`` and return once every one is done, cancelling again each
    ``recancel_every_s`` those still running. What they raised is retrieved, not raised
    (the owner's done-callbacks log failures)."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=recancel_every_s)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit
