"""``LoadLink``: one engine worker's end of its channel to the supervisor's load ledger.

The supervisor makes a Unix socket pair per worker it starts and passes one end down
(``ivr_engine/workers/load_ledger.py`` holds the other); ``load_wire.py`` says what goes
over it. The call path only appends an update to a list (``send``): once per event-loop
tick the pending updates leave as one line, one ``write`` on the non-blocking socket.

Nothing here waits on the supervisor. What the kernel does not take at once waits in the
transport's buffer; past ``max_buffered_bytes`` (the supervisor not reading) updates are
dropped and counted (``updates_dropped``, logged once per episode), and the count reaches
the ledger with the next line it takes. A closed channel (the supervisor gone: the worker
is about to get SIGTERM) drops the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from ivr_engine.contact_center.load_tracker import LoadUnavailable
from ivr_engine.contact_center.load_wire import (
    MAX_LINE_BYTES,
    BadMessage,
    LoadState,
    Update,
    decode,
    encode,
    parse_state,
    to_us,
)
from ivr_engine.stopping import cancel_and_wait

log = logging.getLogger(__name__)

MAX_BUFFERED_BYTES: Final = 1024 * 1024  # ~16,000 updates (~5,000 calls) beyond the kernel's
REPORT_EVERY_S: Final = 1.0  # this process's counters reach the ledger within this long
CLOSE_TIMEOUT_S: Final = 2.0  # the last updates' write on stop, then the channel is cut
DROPPED: Final = "updates_dropped"


class LoadLink:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        report_every_s: float = REPORT_EVERY_S,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._max_buffered = max_buffered_bytes
        self._pending: list[Update] = []
        self._flush_scheduled = False
        self._replies: dict[int, asyncio.Future[LoadState]] = {}
        self._request_ids = itertools.count(1)
        self._counters: dict[str, Callable[[], int]] = {DROPPED: lambda: self.updates_dropped}
        self._reported: dict[str, int] = {}
        self._closed = False
        self._dropping = False
        self.updates_dropped = 0
        self._tasks = [
            asyncio.create_task(self._read_replies(), name="load-link-reader"),
            asyncio.create_task(self._report_every(report_every_s), name="load-link-report"),
        ]

    @classmethod
    async def open(cls, fd: int, **limits: Any) -> LoadLink:
        """The link on the socket the supervisor passed down as ``fd``."""
        sock = socket.socket(fileno=fd)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE_BYTES)
        return cls(reader, writer, **limits)

    def watch(self, name: str, read: Callable[[], int]) -> None:
        """Report this process's counter ``name`` (absolute, from ``read``) to the ledger."""
        self._counters[name] = read

    # ------------------------------------------------------------------ the call path

    def send(self, update: Update) -> None:
        """Queue one update; it leaves at the end of this event-loop tick. Never blocks."""
        self._pending.append(update)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the pending updates (dropped past the bound) and changed counters now."""
        self._flush_scheduled = False
        if self._pending:
            batch, self._pending = self._pending, []
            if not self._write(["u", batch]):
                self._drop(len(batch))
        counters = {name: read() for name, read in self._counters.items()}
        if counters != self._reported and self._write(["c", counters]):
            self._reported = counters

    def _write(self, message: list[Any]) -> bool:
        transport = self._writer.transport
        if self._closed or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > self._max_buffered:
            return False
        self._writer.write(encode(message))
        if self._dropping:
            self._dropping = False
            log.warning("load updates flow to the supervisor again (%d dropped in all)",
                        self.updates_dropped)  # fmt: skip
        return True

    def _drop(self, count: int) -> None:
        self.updates_dropped += count
        if not self._dropping:
            self._dropping = True
            log.warning(
                "load updates dropped: the supervisor's load ledger is %s; /v1/load and "
                "/metrics miss them (counted in ivr_load_updates_dropped_total)",
                "gone" if self._closed else "not reading",
            )

    # ------------------------------------------------------------------ reads (worker 0)

    async def request_state(self, now: datetime, timeout_s: float) -> LoadState:
        """The engine's load state at ``now``, this worker's pending updates included;
        ``LoadUnavailable`` if the ledger does not answer within ``timeout_s``."""
        self.flush()
        request_id = next(self._request_ids)
        reply: asyncio.Future[LoadState] = self._loop.create_future()
        self._replies[request_id] = reply
        try:
            if not self._write(["q", request_id, to_us(now)]):
                raise LoadUnavailable("the supervisor's load ledger is not reading")
            async with asyncio.timeout(timeout_s):
                return await reply
        except TimeoutError:
            raise LoadUnavailable(
                f"the supervisor's load ledger did not answer within {timeout_s:g} s"
            ) from None
        finally:
            del self._replies[request_id]

    async def _read_replies(self) -> None:
        try:
            while line := await self._reader.readline():
                self._on_reply(line)
        except (ValueError, ConnectionError) as exc:  # ValueError: a line over the limit
            log.error("load link to the supervisor broken (%r)", exc)
        finally:
            self._closed = True
            for reply in self._replies.values():
                if not reply.done():
                    reply.set_exception(LoadUnavailable("the supervisor's load ledger is gone"))

    def _on_reply(self, line: bytes) -> None:
        try:
            match decode(line):
                case ["s", int(request_id), body]:
                    reply = self._replies.get(request_id)
                    if reply is not None and not reply.done():
                        reply.set_result(parse_state(body))
                case other:
                    raise BadMessage(f"unexpected {str(other)[:80]}")
        except BadMessage as exc:
            log.error("load link: bad line from the supervisor, skipped (%s)", exc)

    # ------------------------------------------------------------------ lifetime

    async def _report_every(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            self.flush()

    async def aclose(self) -> None:
        """Write what is pending, then close (cut after ``CLOSE_TIMEOUT_S``)."""
        self.flush()
        await cancel_and_wait(self._tasks)
        self._closed = True
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._writer.wait_closed()
        except (TimeoutError, ConnectionError):
            self._writer.transport.abort()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
