"""``AmiReader``: AMI events → ``normalise`` → the durable outbox, in group commits.

Loop: take the next AMI event, plus every event already queued behind it (up to
``max_batch``); normalise them in order; append the resulting call events and the state
changes to the outbox in ONE transaction; only then tell the publisher. Nothing leaves the
process before it is committed there, so a crash loses at most the events read since the
last commit (AMI cannot replay them: see README "What can be recovered").

``FullyBooted`` (sent by Asterisk after every login, so after a reconnect and after an
Asterisk restart) starts a resync: the calls live so far become suspects, the reader asks
``CoreShowChannels``, normalises the events that arrived before its answer, then
``reconcile`` closes suspects that are gone and adopts inbound calls it never saw start.
A subscription overflow (the reader fell ``maxsize`` events behind) is a gap too: the
reader subscribes again and resyncs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from crm_bridge.calls.model import NormalisedEvent
from crm_bridge.calls.normalise import SUBSCRIBED_EVENTS, normalise
from crm_bridge.calls.outbox import OutboxError, SqliteOutbox
from crm_bridge.calls.resync import begin_resync, reconcile
from crm_bridge.calls.state import BridgeState
from ivr_engine.telephony.ami import AmiClient, AmiError, AmiEvent, Backoff, Subscription

__all__ = ["AmiReader"]
log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AmiReader:
    def __init__(
        self,
        ami: AmiClient,
        outbox: SqliteOutbox,
        state: BridgeState,
        *,
        on_committed: Callable[[], None] = lambda: None,
        max_batch: int = 2000,
        queue_size: int = 50_000,
        clock: Clock | None = None,
    ) -> None:
        self._ami, self._outbox, self._state = ami, outbox, state
        self._on_committed = on_committed
        self._max_batch, self._queue_size = max_batch, queue_size
        self._clock = clock or _utc_now
        self._backoff = Backoff(0.1, 5.0)
        # Subscribed now, before the client connects: the first FullyBooted is not missed.
        self._subscription: Subscription | None = self._subscribe()
        self.events_read = 0
        self.events_skipped = 0  # normalising raised (a bug): logged with its traceback
        self.events_appended = 0
        self.resyncs = 0

    @property
    def state(self) -> BridgeState:
        return self._state

    def _subscribe(self) -> Subscription:
        return self._ami.subscribe(*SUBSCRIBED_EVENTS, maxsize=self._queue_size)

    async def run(self) -> None:
        gap = False
        while True:
            subscription, self._subscription = self._subscription or self._subscribe(), None
            try:
                if gap:
                    await self._resync(subscription, [])
                await self._read(subscription)
                return  # the client was closed
            except AmiError as exc:  # overflow: events were dropped, so resync
                log.error("AMI event stream interrupted (%r): subscribing again", exc)
                gap = True
            finally:
                subscription.close()

    async def _read(self, subscription: Subscription) -> None:
        while True:
            try:
                first = await subscription.get()
            except StopAsyncIteration:
                return
            batch = [first, *subscription.take(self._max_batch - 1)]
            boot = _boot_index(batch)
            if boot is None:
                await self._commit(self._normalise_all(batch))
                continue
            await self._commit(self._normalise_all(batch[:boot]))
            await self._resync(subscription, batch[boot + 1 :])

    def _normalise_all(self, events: list[AmiEvent]) -> list[NormalisedEvent]:
        now = self._clock()
        self.events_read += len(events)
        out: list[NormalisedEvent] = []
        for event in events:
            try:
                out += normalise(event, self._state, at=now)
            except Exception:  # a bug for one event must not stop the bridge for every call
                self.events_skipped += 1
                log_skipped(log, self.events_skipped, f"AMI {event.name}", event, "Uniqueid")
        return out

    async def _commit(self, events: list[NormalisedEvent]) -> None:
        changes = self._state.take_changes()
        if not events and not changes.saved and not changes.removed:
            return
        while True:
            try:
                await self._outbox.append(events, changes)
                break
            except OutboxError as exc:  # disk full ...: keep the batch, AMI events queue up
                delay = self._backoff.next_delay()
                log.error("cannot append to the call outbox (%s); retry in %.1fs", exc, delay)
                await asyncio.sleep(delay)
        self._backoff.reset()
        self.events_appended += len(events)
        if events:
            self._on_committed()

    async def _resync(self, subscription: Subscription, before: list[AmiEvent]) -> None:
        """Close calls that ended unseen, adopt calls that started unseen (see module doc).

        ``before``: events taken after ``FullyBooted``, before the list is asked. Events
        queued when the list's answer arrives were sent before it, so they are normalised
        first: a call that ended or started just then is handled by its own events. The
        suspects are the calls live when the list is asked; a call that starts after that is
        never closed for being absent. Again if another ``FullyBooted`` came meanwhile.
        """
        again = True
        while again:
            await self._commit(self._normalise_all(before))
            suspects = begin_resync(self._state)
            try:
                listed = await self._ami.action_list("CoreShowChannels", timeout_s=30)
            except AmiError as exc:
                log.warning("resync skipped, no channel list (%r); next login retries", exc)
                return
            self.resyncs += 1
            queued = subscription.take(subscription.pending())
            again = _boot_index(queued) is not None
            await self._commit(self._normalise_all(queued))
            found = reconcile(self._state, listed.events, suspects, at=self._clock())
            await self._commit(found)
            if found:
                log.info("AMI resync: %d call event(s) from the channel list", len(found))
            before = []


def _boot_index(events: list[AmiEvent]) -> int | None:
    """Where the first ``FullyBooted`` is (Asterisk logged us in again), if any."""
    for i, event in enumerate(events):
        if event.name.lower() == "fullybooted":
            return i
    return None


def worth_logging(skipped: int) -> bool:
    """The first 10 skipped events, then the 16th, 32nd, 64th...: a bug that hits every
    event logs a trace now and then instead of one per event."""
    return skipped <= 10 or skipped & (skipped - 1) == 0


class _Headers(Protocol):
    def get(self, key: str, /) -> object: ...


def log_skipped(
    logger: logging.Logger, skipped: int, what: str, event: _Headers, id_key: str
) -> None:
    """Log (with the traceback: call it in the ``except`` block) that the normaliser raised
    on ``event`` and it was skipped, when ``worth_logging(skipped)``."""
    if worth_logging(skipped):
        logger.exception("%s (%s %r) skipped (%d so far)", what, id_key, event.get(id_key), skipped)
