"""Where deliveries wait when they cannot stay in memory: the ``DeliveryStore`` port.

It holds two kinds of delivery, each keyed by its delivery id:

* **parked**: not yet delivered. A subscription's queue overflowed, or the dispatcher stopped
  with deliveries still queued. The dispatcher delivers parked deliveries by itself, oldest
  ``order_key`` first, before anything newer for that subscription (so order is kept), and
  resumes them after a restart.
* **dead**: given up on (a 4xx other than 429, a redirect, or every attempt failed). Listed
  with ``dead_letters``; ``revive`` turns chosen ones back into parked deliveries (re-drive).

``InMemoryDeliveryStore`` is for tests and single-process demos (lost on exit);
``SqliteDeliveryStore`` (``sqlite_store.py``) is the durable one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DeadLetter", "Delivery", "DeliveryStore", "InMemoryDeliveryStore"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one subscription; the id stays the same across retries and re-drives."""

    delivery_id: str
    subscription_id: str
    event_type: str
    event_id: str
    body: bytes
    order_key: int  # publish order (nanoseconds, strictly increasing per dispatcher)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    delivery: Delivery
    attempts: int
    last_error: str
    failed_at: float  # unix seconds


class DeliveryStore(Protocol):
    async def park(self, delivery: Delivery) -> None:
        """Keep ``delivery`` to be delivered later (replaces a parked or dead copy)."""
        ...

    async def park_new(self, deliveries: Sequence[Delivery], now: float) -> int:
        """Park, in one transaction, the deliveries whose id this store never parked
        before (the relay's replays are skipped: their ids are derived from the event);
        returns how many were parked. Ids are remembered until ``forget_relayed``."""
        ...

    async def forget_relayed(self, before: float) -> None:
        """Forget the ids ``park_new`` saw before ``before`` (unix seconds)."""
        ...

    async def next_parked(self, subscription_id: str) -> Delivery | None:
        """The parked delivery with the lowest ``order_key`` for this subscription."""
        ...

    async def parked_subscriptions(self) -> set[str]:
        """Subscription ids that have parked deliveries (resumed at start)."""
        ...

    async def unpark(self, delivery_id: str) -> None:
        """Forget a parked delivery (it was delivered). Unknown ids are ignored."""
        ...

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        """Record a failed delivery (replaces a parked copy of it)."""
        ...

    async def dead_letters(
        self, subscription_id: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead letters, oldest ``order_key`` first."""
        ...

    async def revive(self, delivery_ids: Collection[str]) -> list[Delivery]:
        """Turn these dead letters back into parked deliveries; return those it found."""
        ...

    async def aclose(self) -> None: ...


class InMemoryDeliveryStore:
    """Not durable: for tests and single-process demos."""

    def __init__(self) -> None:
        self._parked: dict[str, Delivery] = {}
        self._dead: dict[str, DeadLetter] = {}
        self._relayed: dict[str, float] = {}

    async def park(self, delivery: Delivery) -> None:
        self._dead.pop(delivery.delivery_id, None)
        self._parked[delivery.delivery_id] = delivery

    async def park_new(self, deliveries: Sequence[Delivery], now: float) -> int:
        new = [d for d in deliveries if d.delivery_id not in self._relayed]
        for delivery in new:
            self._relayed[delivery.delivery_id] = now
            await self.park(delivery)
        return len(new)

    async def forget_relayed(self, before: float) -> None:
        self._relayed = {k: at for k, at in self._relayed.items() if at >= before}

    async def next_parked(self, subscription_id: str) -> Delivery | None:
        mine = [d for d in self._parked.values() if d.subscription_id == subscription_id]
        return min(mine, key=lambda d: d.order_key, default=None)

    async def parked_subscriptions(self) -> set[str]:
        return {d.subscription_id for d in self._parked.values()}

    async def unpark(self, delivery_id: str) -> None:
        self._parked.pop(delivery_id, None)

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        self._parked.pop(letter.delivery.delivery_id, None)
        self._dead[letter.delivery.delivery_id] = letter

    async def dead_letters(
        self, subscription_id: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        letters = [
            letter
            for letter in self._dead.values()
            if subscription_id in (None, letter.delivery.subscription_id)
        ]
        return sorted(letters, key=lambda letter: letter.delivery.order_key)[:limit]

    async def revive(self, delivery_ids: Collection[str]) -> list[Delivery]:
        revived = [
            self._dead.pop(i).delivery for i in dict.fromkeys(delivery_ids) if i in self._dead
        ]
        self._parked.update((d.delivery_id, d) for d in revived)
        return revived

    async def aclose(self) -> None:
        return None
