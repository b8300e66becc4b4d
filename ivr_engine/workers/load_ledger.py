"""``LoadLedger``: the engine's one load state when several workers run, kept by the supervisor.

With ``agents_file`` set, the supervisor makes a Unix socket pair for each worker it starts
(``channel``), passes one end down and ``attach``es the other here. Every worker sends its
load updates (calls waiting, ringing, answered, ended; outcome and decision counts) and its
own counters (screen pops lost, updates dropped) up the channel (``LoadLink``); worker 0
asks for the state when ``GET /v1/load`` or ``/metrics`` is served (``LinkedLoadTracker``).
The updates are applied to one ``LoadTracker``, so the figures are what one engine process
taking every call would report, and a call routed by one worker and answered on worker 0's
AMI connection is one call.

The supervisor outlives every worker, so a worker's restart (worker 0 included) loses
nothing here: only the updates of the tick it died in, and the AMI events Asterisk sent
while worker 0 was down (as in any AMI outage: such calls are forgotten after
``stale_after_s``). A process's counters are kept per worker, and the last value of a
worker that died is kept, so a restart never makes a counter go down.

The supervisor must not fall over a worker's line: one that is not a message is logged
(first of each channel) and skipped; one over ``MAX_LINE_BYTES`` ends that channel (the
worker's later updates are lost until it restarts). Nothing here does I/O but the sockets.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ivr_engine.contact_center.load_tracker import (
    DEFAULT_MAX_CALLS,
    DEFAULT_STALE_AFTER_S,
    LoadTracker,
)
from ivr_engine.contact_center.load_view import LoadView
from ivr_engine.contact_center.load_wire import (
    MAX_LINE_BYTES,
    BadMessage,
    LoadState,
    WorkerCounters,
    apply_update,
    decode,
    encode,
    from_us,
    state_message,
)
from ivr_engine.stopping import cancel_and_wait
from ivr_engine.workers.role import WorkerRole

log = logging.getLogger(__name__)

MAX_REPLY_BACKLOG = MAX_LINE_BYTES  # state replies a worker does not read: not one more


@dataclass
class _Channel:
    index: int  # the worker's
    counters: dict[str, int] = field(default_factory=dict)
    bad_lines: int = 0


class LoadLedger:
    def __init__(
        self,
        *,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        max_calls: int = DEFAULT_MAX_CALLS,
    ) -> None:
        self.tracker = LoadTracker(
            LoadView.empty(), stale_after_s=stale_after_s, max_calls=max_calls
        )
        self._channels: dict[int, _Channel] = {}
        self._retired: dict[int, Counter[str]] = {}  # per worker: its dead processes' counters
        self._ids = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def channel() -> tuple[socket.socket, socket.socket]:
        """A new socket pair: (the ledger's end, the worker's end)."""
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def attach(self, role: WorkerRole, sock: socket.socket) -> None:
        """Serve the ledger's end of ``role``'s channel until the worker closes it."""
        task = asyncio.create_task(self._serve(role.index, sock), name=f"load-ledger-{role.name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("load ledger channel failed: %r", task.exception())

    async def _serve(self, index: int, sock: socket.socket) -> None:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE_BYTES)
        channel_id = next(self._ids)
        self._channels[channel_id] = _Channel(index)

        def reply(data: bytes) -> None:
            if writer.transport.get_write_buffer_size() <= MAX_REPLY_BACKLOG:
                writer.write(data)

        try:
            while line := await reader.readline():
                self.handle(channel_id, line, reply)
        except (ValueError, ConnectionError) as exc:  # ValueError: a line over the limit
            log.error("load ledger: worker %d's channel ends (%r)", index, exc)
        finally:
            self._retire(channel_id)
            writer.close()

    def handle(self, channel_id: int, line: bytes, reply: Callable[[bytes], None]) -> None:
        """One line from a worker's channel; ``reply`` answers it."""
        channel = self._channels[channel_id]
        try:
            match decode(line):
                case ["u", list(updates)]:
                    for update in updates:
                        self._apply(channel, update)
                case ["c", dict(counters)]:
                    channel.counters = _counters(counters)
                case ["q", int(request_id), int(now_us)]:
                    reply(encode(state_message(request_id, self.state(from_us(now_us)))))
                case other:
                    raise BadMessage(f"unexpected {str(other)[:80]}")
        except BadMessage as exc:
            self._bad(channel, exc)

    def _apply(self, channel: _Channel, update: object) -> None:
        try:
            apply_update(self.tracker, update)
        except (BadMessage, ValueError) as exc:  # ValueError: e.g. a naive time
            self._bad(channel, exc)

    def _bad(self, channel: _Channel, exc: Exception) -> None:
        channel.bad_lines += 1
        if channel.bad_lines == 1:
            log.error("load ledger: worker %d sent what is not a load message, skipped "
                      "(%s); further ones are counted, not logged", channel.index, exc)  # fmt: skip

    def _retire(self, channel_id: int) -> None:
        channel = self._channels.pop(channel_id)
        self._retired.setdefault(channel.index, Counter()).update(channel.counters)
        if channel.bad_lines > 1:
            log.error("load ledger: worker %d sent %d bad lines in all", channel.index,
                      channel.bad_lines)  # fmt: skip

    def state(self, now: datetime) -> LoadState:
        """The calls still waited on at ``now`` (stale ones forgotten), the counters."""
        self.tracker.forget_stale(now)
        return LoadState(self.tracker.calls(), self.tracker.counters(), self.worker_counters())

    def worker_counters(self) -> WorkerCounters:
        """Per worker: its dead processes' counters plus its running one's."""
        totals = {index: Counter(counts) for index, counts in self._retired.items()}
        for channel in self._channels.values():
            totals.setdefault(channel.index, Counter()).update(channel.counters)
        return {index: dict(counts) for index, counts in sorted(totals.items())}

    async def aclose(self) -> None:
        await cancel_and_wait(list(self._tasks))


def _counters(raw: Mapping[object, object]) -> dict[str, int]:
    counters = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not isinstance(value, int) or value < 0:
            raise BadMessage(f"counter {name!r}: {value!r}")
        counters[name] = value
    return counters
