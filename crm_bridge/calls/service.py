"""The composition root: ``Bridge`` builds, starts and stops the pieces; ``run_bridge`` runs
one until cancelled.

reader role:   AmiClient → AmiReader (normalise) → SqliteOutbox → OutboxPublisher → bus
               (``esl_url``: EslEventSource → EslReader (normalise_esl) → the same outbox)
consumer role: bus → TimelineConsumer (CustomerResolver, FastCallWriter) → timeline
               (with ``webhooks_file``: WebhookRelay tails the timeline → webhook subscribers)

Every task is kept, its failure logged and surfaced by ``wait()``; ``stop()`` ends them in
order: the AMI client or the ESL reader (the reader commits what it had read), the
publisher (drains the outbox to the bus within ``shutdown_grace_s``), the consumer (with the
in-process bus, it first gets the same grace to write what was published), then closes the
resources. ``ami_backoff`` is the reconnect back-off of either switch connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from crm_bridge.bus import BusSettings, EventBus, open_event_bus
from crm_bridge.calls.consumer import CustomerResolver, TimelineConsumer
from crm_bridge.calls.esl_normalise import SUBSCRIBED_EVENTS
from crm_bridge.calls.esl_reader import EslReader
from crm_bridge.calls.model import NormalisedEvent
from crm_bridge.calls.normalise import ASTERISK_EVENT_NAMES
from crm_bridge.calls.outbox import SqliteOutbox
from crm_bridge.calls.publisher import OutboxPublisher
from crm_bridge.calls.reader import AmiReader
from crm_bridge.calls.settings import BridgeSettings, parse_esl_url
from crm_bridge.calls.state import BridgeState
from crm_bridge.webhooks.relay import WebhookRelay
from ivr_engine.heap import BRIDGE_YOUNG_THRESHOLD, settle_heap
from ivr_engine.settings import parse_ami_url
from ivr_engine.stopping import cancel_and_wait
from ivr_engine.telephony.ami import AmiClient
from ivr_engine.telephony.esl import EslEventSource
from ivr_engine.timeline import Timeline, open_timeline

__all__ = ["Bridge", "run_bridge"]
log = logging.getLogger(__name__)
Committed = Callable[[Sequence[NormalisedEvent]], None]


class Bridge:
    def __init__(
        self,
        settings: BridgeSettings,
        *,
        on_committed: Committed | None = None,
        clock: Callable[[], datetime] | None = None,
        ami_backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.settings = settings
        self._on_committed = on_committed
        self._clock = clock
        self._ami_backoff = ami_backoff
        self.ami: AmiClient | None = None
        self.outbox: SqliteOutbox | None = None
        self.reader: AmiReader | None = None
        self.esl_reader: EslReader | None = None
        self.publisher: OutboxPublisher | None = None
        self.consumer: TimelineConsumer | None = None
        self.timeline: Timeline | None = None
        self.bus: EventBus | None = None
        self.webhooks: WebhookRelay | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failed = asyncio.Event()

    async def start(self) -> None:
        s = self.settings
        try:
            self.bus = open_event_bus(s.bus_url, BusSettings(partitions=s.bus_partitions))
            if "consumer" in s.roles:
                await self._start_consumer()
            if "reader" in s.roles:
                await self._start_reader()
        except BaseException:
            await self.stop()
            raise

    async def _start_reader(self) -> None:
        s, bus = self.settings, self.bus
        assert bus is not None
        self.outbox = await SqliteOutbox.open(s.outbox_path, sync=s.outbox_sync)
        state = BridgeState.restore(s.normaliser(), await self.outbox.live_calls())
        self.publisher = OutboxPublisher(
            self.outbox,
            bus,
            s.stream,
            window_s=s.publish_window_ms / 1000,
            batch=s.publish_batch,
            delete_when_committed=s.in_process_bus,
        )
        log.info("call bridge: %d live call(s) restored from %s", len(state.calls), s.outbox_path)
        self._spawn("call-outbox-publisher", self.publisher.run())
        self.publisher.notify()  # rows left by a previous run go out at once
        if s.esl_url is not None:
            self._start_esl_reader(s.esl_url, state)
        else:
            await self._start_ami_reader(state)

    async def _start_ami_reader(self, state: BridgeState) -> None:
        s = self.settings
        assert s.ami_url is not None and self.outbox is not None and self.publisher is not None
        host, port, user, secret = parse_ami_url(s.ami_url)
        self.ami = AmiClient(
            host,
            port,
            user,
            secret,
            ping_interval_s=s.ami_ping_interval_s,
            backoff=self._ami_backoff,
            events=s.ami_events,
            server_filter=ASTERISK_EVENT_NAMES if s.ami_server_filter else (),
        )
        self.reader = AmiReader(
            self.ami, self.outbox, state, on_committed=self.publisher.notify, clock=self._clock
        )
        self._spawn("call-ami-reader", self.reader.run())
        await self.ami.start()

    def _start_esl_reader(self, url: str, state: BridgeState) -> None:
        """The ESL source runs inside the reader's task group (connects, reconnects)."""
        assert self.outbox is not None and self.publisher is not None
        host, port, password = parse_esl_url(url)
        source = EslEventSource(host, port, password, SUBSCRIBED_EVENTS, backoff=self._ami_backoff)
        self.esl_reader = EslReader(
            source, self.outbox, state, on_committed=self.publisher.notify, clock=self._clock
        )
        self._spawn("call-esl-reader", self.esl_reader.run())

    async def _start_consumer(self) -> None:
        s, bus = self.settings, self.bus
        assert s.database_url is not None and bus is not None
        self.timeline = await open_timeline(s.database_url)
        if s.webhooks_file is not None:
            self.webhooks = await WebhookRelay.start(
                s.database_url, s.webhooks_file, s.webhooks_store
            )
        self.consumer = TimelineConsumer(
            bus,
            s.stream,
            s.group,
            s.consumer_name,
            CustomerResolver(
                self.timeline.store, lookup=self.timeline.lookup, directory=self.timeline.writer
            ),
            self.timeline.writer,
            batch=s.consume_batch,
            linger_s=s.consume_linger_ms / 1000,
            retry_cap_s=s.db_retry_cap_s,
            on_committed=self._committed,
        )
        self._spawn("call-timeline-consumer", self.consumer.run())

    def _committed(self, events: Sequence[NormalisedEvent]) -> None:
        if self.publisher is not None and self.settings.in_process_bus:
            self.publisher.committed(e.event_id for e in events)
        if self._on_committed is not None:
            self._on_committed(events)

    def _spawn(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks[name] = task
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("call bridge task %s failed", task.get_name(), exc_info=error)
            self._failed.set()

    async def wait(self) -> None:
        """Until a task fails (raises its error); runs for ever otherwise."""
        await self._failed.wait()
        for task in self._tasks.values():
            error = None if not task.done() or task.cancelled() else task.exception()
            if error is not None:
                raise error

    async def stop(self) -> None:
        grace = self.settings.shutdown_grace_s
        if self.ami is not None:
            await self.ami.close()  # the reader commits what it read, then returns
            await self._end("call-ami-reader", grace)
        if self.esl_reader is not None:
            await self.esl_reader.close()  # commits what it read, closes the socket
            await self._end("call-esl-reader", grace)
        if self.publisher is not None:
            await self._end("call-outbox-publisher", 0)
            await self.publisher.drain(grace)
        if (
            self.consumer is not None
            and self.publisher is not None
            and self.settings.in_process_bus
        ):
            await self._caught_up(grace)
        await self._end("call-timeline-consumer", 0)
        closers = (self._close_webhooks, self._close_bus, self._close_timeline, self._close_outbox)
        for close in closers:
            try:
                await close()
            except Exception:
                log.exception("call bridge: error while closing")

    async def _caught_up(self, grace: float) -> None:
        assert self.consumer is not None and self.publisher is not None
        with contextlib.suppress(TimeoutError):
            await self.consumer.wait_committed(self.publisher.published, grace)

    async def _end(self, name: str, grace: float) -> None:
        task = self._tasks.pop(name, None)
        if task is None:
            return
        if grace:
            await asyncio.wait({task}, timeout=grace)
        await cancel_and_wait([task])

    async def _close_webhooks(self) -> None:
        if self.webhooks is not None:  # undelivered deliveries stay parked in its store
            await self.webhooks.aclose(self.settings.shutdown_grace_s)

    async def _close_bus(self) -> None:
        if self.bus is not None:
            await self.bus.aclose()

    async def _close_timeline(self) -> None:
        if self.timeline is not None:
            await self.timeline.close()

    async def _close_outbox(self) -> None:
        if self.outbox is not None:
            await self.outbox.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def run_bridge(
    settings: BridgeSettings,
    *,
    ready: Callable[[Bridge], None] | None = None,
    tune_gc: bool = False,
) -> None:
    """Run the bridge until cancelled (graceful stop) or one of its tasks fails (raised).
    ``tune_gc``: this process is the bridge's own (its entry points): once started, freeze
    the start-up heap and make young collections rarer (``ivr_engine.heap``)."""
    async with Bridge(settings) as bridge:
        if tune_gc:
            settle_heap(BRIDGE_YOUNG_THRESHOLD)
        if ready is not None:
            ready(bridge)
        await bridge.wait()
