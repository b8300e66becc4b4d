"""``OutboxPublisher``: outbox rows → the bus, in micro-batches, then deleted.

Loop: wait until the reader says rows were appended (or ``poll_s`` passes), wait
``window_s`` more (10-50 ms) so a burst goes out as one batch, read up to ``batch`` rows
after the last published id, publish them (one pipelined round trip per 1,000 on Redis),
and go on at once while batches are full. The rows come from the outbox's memory (what the
reader just committed) unless they are older than this process. Published rows are
forgotten (``forget_through``): the reader's next append deletes them in its own
transaction, and when no new rows came for ``poll_s`` they are deleted on their own; while
a backlog goes out (full batches) each batch's rows are deleted at once, as before. Rows
go out in id order, which is each call's event order, and the bus keeps that order per
call (partition key).

Rows are sent as stored (``publish_encoded``: the outbox keeps each event as the bus's JSON
text and partition key), not decoded and encoded again; ``pass_through = False`` decodes
them and uses ``publish`` (the older path, kept for the side-by-side bench).

At least once: a crash after the publish but before the delete (so also before the next
append) publishes those rows again after the restart, and a ``BusUnavailable`` publish is
retried whole (with back-off) even if Redis took part of it; the consumer skips what it has
already written (by ``event_id``).

``delete_when_committed`` (for the in-process bus, which forgets everything when the process
dies): rows are deleted only once the consumer reports them written (``committed``), so a
crash republishes whatever had not reached the timeline yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from crm_bridge.bus import BusError, BusUnavailable, EventBus
from crm_bridge.calls.outbox import OutboxError, OutboxRow, SqliteOutbox
from ivr_engine.telephony.ami import Backoff

__all__ = ["OutboxPublisher"]
log = logging.getLogger(__name__)


class OutboxPublisher:
    def __init__(
        self,
        outbox: SqliteOutbox,
        bus: EventBus,
        stream: str,
        *,
        window_s: float = 0.01,
        batch: int = 1000,
        poll_s: float = 1.0,
        delete_when_committed: bool = False,
        backoff: Backoff | None = None,
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        if not 0 <= window_s <= 1:
            raise ValueError(f"publish window must be 0..1 s, got {window_s}")
        self._outbox, self._bus, self._stream = outbox, bus, stream
        self._window_s, self._batch, self._poll_s = window_s, batch, poll_s
        self._hold = delete_when_committed
        self._backoff = backoff or Backoff(0.05, 2.0)
        self._on_published = on_published
        self._wakeup = asyncio.Event()
        self._upto = 0  # highest row id published by this process
        self._outstanding: dict[str, int] = {}  # event id -> row id (hold mode)
        self._deletable = 0  # rows through this id may be deleted
        self.published = 0
        self.pass_through = True

    def notify(self) -> None:
        """Rows were appended (called by the reader after each commit)."""
        self._wakeup.set()

    def committed(self, event_ids: Iterable[str]) -> None:
        """The consumer wrote these events (hold mode): their rows may go."""
        for event_id in event_ids:
            self._outstanding.pop(event_id, None)
        self._deletable = min(self._outstanding.values(), default=self._upto + 1) - 1
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._poll_s):
                    await self._wakeup.wait()
            except TimeoutError:  # nothing new for a while: delete what went out
                await self._flush_deletes()
            self._wakeup.clear()
            await asyncio.sleep(self._window_s)
            while await self._publish_once():
                pass
            self._forget()

    async def drain(self, timeout_s: float) -> bool:
        """Publish what is in the outbox now (shutdown); True if all of it went out."""
        try:
            async with asyncio.timeout(timeout_s):
                while await self._publish_once():
                    pass
                self._forget()
                await self._flush_deletes()
                return not await self._outbox.read_after(self._upto, 1)
        except (TimeoutError, BusError, OutboxError) as exc:
            log.warning("call outbox not drained at shutdown (%r); it stays on disk", exc)
            return False

    async def _publish_once(self) -> bool:
        """One batch; True if it was full (more rows may be waiting)."""
        rows = await self._outbox.read_after(self._upto, self._batch)
        if not rows:
            return False
        while True:
            try:
                await self._send(rows)
                break
            except BusUnavailable as exc:
                delay = self._backoff.next_delay()
                log.warning(
                    "bus down (%s): %d rows stay in the outbox, retry in %.2fs",
                    exc,
                    len(rows),
                    delay,
                )
                await asyncio.sleep(delay)
        self._backoff.reset()
        self._upto = rows[-1].id
        self.published += len(rows)
        if self._hold:
            self._outstanding.update((row.event_id, row.id) for row in rows)
        else:
            self._deletable = self._upto
        if self._on_published is not None:
            self._on_published(len(rows))
        self._forget()
        if len(rows) < self._batch:
            return False
        await self._flush_deletes()  # a backlog (an outage, a restart): delete as it goes
        return True

    async def _send(self, rows: list[OutboxRow]) -> None:
        if self.pass_through:
            await self._bus.publish_encoded(self._stream, [(r.partition_key, r.body) for r in rows])
        else:
            await self._bus.publish(self._stream, [row.event for row in rows])

    def _forget(self) -> None:
        if self._deletable > 0:
            self._outbox.forget_through(self._deletable)

    async def _flush_deletes(self) -> None:
        try:
            await self._outbox.flush_forgotten()
        except OutboxError as exc:  # those rows are published again later: harmless
            log.warning("could not delete published outbox rows: %r", exc)
