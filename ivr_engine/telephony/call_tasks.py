"""The per-connection tasks of a call server (FastAGI, ESL outbound socket).

Every task is kept until it ends, its failure logged (a connection's crash never reaches the
server), and on shutdown the calls in flight get a grace period before the rest are
cancelled and awaited: no task is orphaned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class CallTasks:
    def __init__(self, what: str) -> None:
        self._what = what  # "AGI connection", "ESL connection": for the log
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s task failed", self._what, exc_info=task.exception())

    async def drain(self, grace: float) -> None:
        """Let the tasks finish for ``grace`` seconds, then cancel and await the rest."""
        pending = set(self._tasks)
        if pending and grace > 0:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
