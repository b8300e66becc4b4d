"""The API's one way of appending timeline events: through the store.

Nothing is announced after the commit: webhooks come from the relay, which tails the
committed timeline (``crm_bridge.webhooks.relay``), so a crash right after the commit
loses no delivery. A replay (same ``event_id``) inserts nothing and is delivered nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import web

from ivr_engine.domain.models import KnownField
from ivr_engine.ports import Identity, NewTimelineEvent, TimelineStore

__all__ = ["APPENDER", "Appender"]


class Appender:
    def __init__(self, store: TimelineStore) -> None:
        self._store = store

    async def append(self, events: Sequence[NewTimelineEvent]) -> int:
        """Append; returns how many were inserted (0: all were stored already)."""
        return await self._store.append_events(events)

    async def append_with_fields(
        self, event: NewTimelineEvent, fields: Sequence[KnownField]
    ) -> bool:
        """Append one event and, only if it was inserted, its known fields (one transaction)."""
        return await self._store.append_event_with_fields(event, fields)

    async def append_for_identity(
        self,
        identity: Identity,
        event_for: Callable[[str], NewTimelineEvent],
        fields: Sequence[KnownField] | None = None,
    ) -> tuple[str, bool] | None:
        """Append for the owner of ``identity``, created with the event if nobody owns it
        (one transaction: a refused event leaves no customer). Returns (customer_id,
        created); None: the ``event_id`` was stored already (nothing was written)."""
        return await self._store.append_event_for_identity(identity, event_for, fields)


APPENDER = web.AppKey[Appender]("appender")
