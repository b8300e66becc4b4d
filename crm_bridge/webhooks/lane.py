"""A subscription's lane: its bounded in-memory queue, whether the store holds deliveries
for it (*parked*), the delivery in flight, and the one worker task that delivers them.

One delivery is in flight per lane, so event order is kept (retries included), while a slow
or failing subscriber never holds up the others. ``LaneStatus`` is what the dispatcher shows.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from crm_bridge.webhooks.store import Delivery

__all__ = ["Lane", "LaneStatus", "lane_status"]


@dataclass(frozen=True, slots=True)
class LaneStatus:
    queued: int  # in memory
    parked: bool  # the store holds deliveries for this subscription
    in_flight: str | None  # delivery id being attempted (or waiting to be retried)


@dataclass(eq=False)
class Lane:
    subscription_id: str
    queue: deque[Delivery] = field(default_factory=deque)
    parked: bool = False
    current: Delivery | None = None
    current_is_stored: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None

    def idle(self) -> bool:
        return not self.queue and not self.parked and self.current is None


def lane_status(lane: Lane) -> LaneStatus:
    return LaneStatus(
        len(lane.queue), lane.parked, lane.current.delivery_id if lane.current else None
    )
