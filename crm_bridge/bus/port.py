"""The port: what publishers and consumers depend on. See the package docstring for the
delivery and ordering guarantees both implementations give."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Protocol

from crm_bridge.bus.model import (
    BusSettings,
    DeadLetter,
    Delivery,
    DeliveryId,
    EncodedEvent,
    Event,
)

__all__ = ["EventBus"]


class EventBus(Protocol):
    @property
    def settings(self) -> BusSettings: ...

    async def publish(self, stream: str, events: Sequence[Event]) -> None:
        """Append events (in order per partition key); all are checked before any is sent.

        On ``BusUnavailable`` some may have been appended: publishing the whole batch again
        is safe, consumers dedupe by ``event_id``.
        """
        ...

    async def publish_encoded(self, stream: str, entries: Sequence[EncodedEvent]) -> None:
        """``publish`` for events already serialised: ``(partition_key, json_text)``, the
        text a JSON object with the same non-empty ``event_id`` and ``partition_key`` (the
        caller's promise: not parsed again here, so a producer that stores its events as
        text, like the call bridge's outbox, sends them without a decode and re-encode)."""
        ...

    def consume(
        self, stream: str, group: str, consumer: str, *, batch: int = 100, block_ms: int = 1000
    ) -> AsyncGenerator[list[Delivery], None]:
        """Non-empty batches of at most ``batch`` deliveries, for ever.

        ``consumer`` names this consumer within ``group`` and must be unique among the live
        ones. Ack each batch before asking for the next: a partition with unacknowledged
        entries is not read further until they are redelivered (after ``min_idle_ms``) or
        dead-lettered. Stop by cancelling the task or closing the iterator
        (``contextlib.aclosing``): that releases this consumer's partitions at once.
        """
        ...

    async def ack(self, ids: Iterable[DeliveryId]) -> int:
        """Mark deliveries processed; returns how many were still pending."""
        ...

    async def dead_letters(self, stream: str, *, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters of a stream (every group), oldest first."""
        ...

    async def aclose(self) -> None:
        """Close the bus: consumers waiting in ``consume`` raise ``BusClosed``."""
        ...
