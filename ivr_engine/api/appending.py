"""The API's one way of appending timeline events: through the store, then, after the
commit, tell the observer (the webhook feed) about the events this request inserted.

A replay (same ``event_id``) or a concurrent twin that got there first inserts nothing, so
nothing is announced twice. The observer only queues (``CommittedEvents`` never blocks or
raises), so a slow or absent webhook receiver never slows or fails a request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiohttp import web

from ivr_engine.ports import (
    CommittedEvents,
    EventAppender,
    NewTimelineEvent,
    StoredEvent,
    TimelineStore,
)

__all__ = ["APPENDER", "CommittingAppender", "NoObserver"]
log = logging.getLogger(__name__)


class NoObserver:
    """Nobody is told (no webhooks configured)."""

    def committed(self, events: Sequence[NewTimelineEvent | StoredEvent]) -> None:
        return None


class CommittingAppender:
    def __init__(self, store: TimelineStore, observer: CommittedEvents) -> None:
        self._store, self._observer = store, observer
        self._precise = isinstance(store, EventAppender)
        if not self._precise and not isinstance(observer, NoObserver):
            log.warning(
                "%s cannot say which events it inserted: API events are not announced",
                type(store).__name__,
            )

    async def append(self, events: Sequence[NewTimelineEvent]) -> int:
        """Append; returns how many were inserted (0: all were stored already)."""
        if not self._precise:
            return await self._store.append_events(events)
        assert isinstance(self._store, EventAppender)
        inserted = await self._store.append_new_events(events)
        if inserted:
            self._observer.committed(inserted)
        return len(inserted)


APPENDER = web.AppKey[CommittingAppender]("appender")
