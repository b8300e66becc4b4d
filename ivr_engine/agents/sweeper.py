"""Background sweep that writes expired reservations down, so the change feed shows them.

Operations already treat an expired reservation as gone; without the sweep a desktop or load
view would only learn of the expiry when something next touches the agent. An expiry (a
reserved or ringing agent nobody gave back: the engine died, a reply was lost) is a change
with cause ``expiry`` on the feed, and a warning here. The composition
root owns the task (start it, cancel and await it on shutdown).
"""

from __future__ import annotations

import asyncio
import logging

from ivr_engine.agents.errors import AgentStateUnavailable
from ivr_engine.agents.store import AgentStateStore

log = logging.getLogger(__name__)


async def sweep_reservations(store: AgentStateStore, *, interval_s: float = 1.0) -> None:
    """Run until cancelled; a store outage is logged and retried at the next interval."""
    while True:
        try:
            expired = await store.expire_reservations()
        except AgentStateUnavailable as exc:
            log.warning("reservation sweep skipped: %s", exc)
        else:
            if expired:
                log.warning("reservations expired (nobody gave them back): agents %s", expired)
        await asyncio.sleep(interval_s)
