"""``EslReader``: FreeSWITCH inbound Event Socket → ``normalise_esl`` → the durable outbox.

The FreeSWITCH twin of ``AmiReader``: the ``EslEventSource`` (connect, ``auth``, ``event
plain`` the ``SUBSCRIBED_EVENTS``, reconnect with back-off) queues events; the reader takes
the next one plus every event already queued behind it (up to ``max_batch``), normalises
them in order and appends the call events AND the state changes to the outbox in ONE
transaction before telling the publisher. The source runs as a task of the reader's own
``TaskGroup``: ``close()`` stops it, the reader commits what it had read and returns.

A reconnect is a gap (the Event Socket has no replay): it is logged and counted in
``gaps``. After every login (the first one too: a restarted bridge restores live calls from
the outbox) the source asks ``api show channels as json`` and queues the answer behind the
events FreeSWITCH sent before it; the reader normalises those first, then ``esl_resync``
closes the calls that ended unseen and adopts the inbound calls that started unseen, all in
the same group commit as the events around it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from crm_bridge.calls.esl_normalise import normalise_esl
from crm_bridge.calls.esl_resync import CHANNEL_LIST, parse_channels, reconcile_channels
from crm_bridge.calls.model import NormalisedEvent
from crm_bridge.calls.outbox import OutboxError, SqliteOutbox
from crm_bridge.calls.reader import log_skipped
from crm_bridge.calls.resync import begin_resync
from crm_bridge.calls.state import BridgeState
from ivr_engine.telephony.ami.backoff import Backoff
from ivr_engine.telephony.esl import EslApiOutput, EslEvent, EslEventSource

__all__ = ["EslReader"]
log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class EslReader:
    def __init__(
        self,
        source: EslEventSource,
        outbox: SqliteOutbox,
        state: BridgeState,
        *,
        on_committed: Callable[[], None] = lambda: None,
        max_batch: int = 2000,
        clock: Clock | None = None,
    ) -> None:
        self._source, self._outbox, self._state = source, outbox, state
        source.after_login(CHANNEL_LIST)
        self._on_committed = on_committed
        self._max_batch = max_batch
        self._clock = clock or _utc_now
        self._backoff = Backoff(0.1, 5.0)
        self._stop = asyncio.Event()
        self.events_read = 0
        self.events_skipped = 0  # normalising raised (a bug): logged with its traceback
        self.events_appended = 0
        self.gaps = 0
        self.resyncs = 0

    @property
    def state(self) -> BridgeState:
        return self._state

    async def run(self) -> None:
        """Until ``close()``; a failing source or outbox append is logged and retried."""
        async with asyncio.TaskGroup() as group:
            source = group.create_task(self._source.run(), name="esl-event-source")
            try:
                await self._read()
            finally:
                await self._source.close()
                source.cancel()

    async def close(self) -> None:
        self._stop.set()

    async def _read(self) -> None:
        seen_connections = 0
        stop = asyncio.create_task(self._stop.wait())
        try:
            while True:
                get = asyncio.ensure_future(self._source.queue.get())
                await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    await asyncio.gather(get, return_exceptions=True)
                    return
                if seen_connections and self._source.connections > seen_connections:
                    self.gaps += 1
                    log.warning("ESL reconnected: events sent meanwhile are lost")
                seen_connections = self._source.connections
                batch = [get.result(), *self._queued()]
                await self._commit(self._normalise_all(batch))
        finally:
            stop.cancel()
            await asyncio.gather(stop, return_exceptions=True)

    def _queued(self) -> list[EslEvent | EslApiOutput]:
        queue = self._source.queue
        return [queue.get_nowait() for _ in range(min(self._max_batch - 1, queue.qsize()))]

    def _normalise_all(self, items: list[EslEvent | EslApiOutput]) -> list[NormalisedEvent]:
        now = self._clock()
        out: list[NormalisedEvent] = []
        for item in items:
            if isinstance(item, EslApiOutput):
                out += self._resync(item, now)
            else:
                self.events_read += 1
                try:
                    out += normalise_esl(item, self._state, at=now)
                except Exception:  # a bug for one event must not stop the bridge
                    self.events_skipped += 1
                    log_skipped(log, self.events_skipped, f"ESL {item.name}", item, "Unique-ID")
        return out

    def _resync(self, listing: EslApiOutput, now: datetime) -> list[NormalisedEvent]:
        try:
            rows = parse_channels(listing.output)
        except ValueError as exc:
            log.warning("ESL resync skipped (%s); the next login asks again", exc)
            return []
        self.resyncs += 1
        found = reconcile_channels(self._state, rows, begin_resync(self._state), at=now)
        if found:
            log.info("ESL resync: %d call event(s) from the channel list", len(found))
        return found

    async def _commit(self, events: list[NormalisedEvent]) -> None:
        changes = self._state.take_changes()
        if not events and not changes.saved and not changes.removed:
            return
        while True:
            try:
                await self._outbox.append(events, changes)
                break
            except OutboxError as exc:  # disk full ...: keep the batch, events queue up
                delay = self._backoff.next_delay()
                log.error("cannot append to the call outbox (%s); retry in %.1fs", exc, delay)
                await asyncio.sleep(delay)
        self._backoff.reset()
        self.events_appended += len(events)
        if events:
            self._on_committed()
