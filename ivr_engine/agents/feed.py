"""In-process fan-out of agent changes to subscribers, each with a bounded backlog."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from ivr_engine.agents.errors import ChangeFeedLagged
from ivr_engine.agents.model import AgentChange

_LAGGED: Final = object()
_CLOSED: Final = object()


class ChangeFanout:
    """Publish never blocks: a subscriber ``max_backlog`` changes behind is cut off."""

    def __init__(self, max_backlog: int = 1000) -> None:
        self._max_backlog = max_backlog
        self._queues: set[asyncio.Queue[object]] = set()

    def publish(self, change: AgentChange) -> None:
        for queue in list(self._queues):
            if queue.qsize() >= self._max_backlog:
                self._queues.discard(queue)
                queue.put_nowait(_LAGGED)
            else:
                queue.put_nowait(change)

    def close(self) -> None:
        for queue in self._queues:
            queue.put_nowait(_CLOSED)
        self._queues.clear()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[AgentChange]]:
        queue: asyncio.Queue[object] = asyncio.Queue()
        self._queues.add(queue)
        try:
            yield _drain(queue)
        finally:
            self._queues.discard(queue)


async def _drain(queue: asyncio.Queue[object]) -> AsyncIterator[AgentChange]:
    while True:
        item = await queue.get()
        if item is _CLOSED:
            return
        if item is _LAGGED:
            raise ChangeFeedLagged("agent change feed subscriber fell behind; resubscribe")
        assert isinstance(item, AgentChange)
        yield item
