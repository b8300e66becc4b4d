"""``EslEventSource``: events from FreeSWITCH's inbound Event Socket, reconnecting for ever.

Per connection: wait for ``auth/request``, ``auth PASSWORD`` (``-ERR invalid`` is
``EslAuthFailed``: logged, retried at the back-off cap so a wrong password does not hammer
the switch), then ``event plain NAMES...`` (``HEARTBEAT`` is always added: FreeSWITCH sends
one every 20 s, so silence for ``idle_timeout_s`` means a dead connection). ``events`` reads
as ``event plain`` does: event names, then optionally ``CUSTOM`` and its subclasses, since
mod_event_socket takes every word after ``CUSTOM`` as a subclass; so ``HEARTBEAT`` goes with
the names, before ``CUSTOM`` (``subscription_words``). Events go into a bounded queue in
arrival order; a full queue makes the reader wait (TCP back-pressure).
A lost connection is logged and retried with exponential back-off and jitter (the AMI
client's ``Backoff``), reset after each successful subscription. ``connections`` counts
subscriptions: a consumer that sees it grow knows events may have been missed meanwhile
(the Event Socket has no replay).

``after_login(command)``: after each subscription the source runs ``api <command>`` (e.g.
``show channels as json``) and queues its output as an ``EslApiOutput`` behind the events
read before the reply (sent before it), so a consumer sees the answer in order with the
events and can resync from it. A reply that does not come within ``timeout_s`` is a lost
connection (reconnect, ask again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ivr_engine.telephony.ami.backoff import Backoff, make_backoff
from ivr_engine.telephony.esl.connection import DEFAULT_LIMITS, EslConnection, EslLimits
from ivr_engine.telephony.esl.errors import EslAuthFailed, EslCommandError, EslError
from ivr_engine.telephony.esl.protocol import ContentType, EslEvent, check_line

log = logging.getLogger(__name__)
HEARTBEAT = "HEARTBEAT"
CUSTOM = "CUSTOM"
API_OUTPUT_MAX_BYTES = 32 * 1024 * 1024  # ``show channels`` is ~1 KB per channel


def subscription_words(events: Sequence[str]) -> list[str]:
    """The ``event plain`` words: the names and ``HEARTBEAT``, then ``CUSTOM`` and the words
    after it in ``events`` (subclasses: mod_event_socket reads every word after ``CUSTOM`` as
    one, so a name placed there would never be subscribed)."""
    words = list(events)
    at = words.index(CUSTOM) if CUSTOM in words else len(words)
    names = [w for w in words[:at] if w != HEARTBEAT]
    return [*names, HEARTBEAT, *words[at:]]


@dataclass(frozen=True, slots=True)
class EslApiOutput:
    """The output of the ``after_login`` command, run after the ``connection``-th login."""

    connection: int
    command: str
    output: str


@dataclass(frozen=True, slots=True)
class _AfterLogin:
    command: str
    timeout_s: float


class EslEventSource:
    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        events: Sequence[str],
        *,
        backoff: tuple[float, float] | Backoff = (0.5, 30.0),
        connect_timeout_s: float = 5.0,
        idle_timeout_s: float = 60.0,
        queue_size: int = 50_000,
        limits: EslLimits = DEFAULT_LIMITS,
    ) -> None:
        for word in (password, *events):
            check_line(word)
        self._address = (host, port)
        self._password = password
        self._subscription = " ".join(subscription_words(events))
        self._backoff = make_backoff(backoff)
        self._connect_timeout = connect_timeout_s
        self._idle_timeout = idle_timeout_s
        self._limits = limits
        self.queue: asyncio.Queue[EslEvent | EslApiOutput] = asyncio.Queue(queue_size)
        self.connections = 0
        self.connected = asyncio.Event()
        self._closed = False
        self._conn: EslConnection | None = None
        self._after_login: _AfterLogin | None = None

    def after_login(self, command: str, *, timeout_s: float = 30.0) -> None:
        """Run ``api <command>`` after every login and queue its output (before ``run``)."""
        check_line(command)
        self._after_login = _AfterLogin(command, timeout_s)
        body = max(self._limits.max_body_bytes, API_OUTPUT_MAX_BYTES)
        self._limits = replace(self._limits, max_body_bytes=body)

    async def run(self) -> None:
        """Connect, subscribe and queue events until ``close()``; never raises ``EslError``."""
        while not self._closed:
            try:
                await self._session()
                delay = self._backoff.next_delay()
            except EslAuthFailed as exc:
                delay = self._backoff.cap_delay()
                log.error("ESL login refused (%s); retry in %.1fs", exc, delay)
            except (EslError, OSError, TimeoutError) as exc:
                delay = self._backoff.next_delay()
                if not self._closed:
                    log.warning("ESL events interrupted (%r); reconnect in %.1fs", exc, delay)
            finally:
                self.connected.clear()
            if not self._closed:
                await asyncio.sleep(delay)

    async def _session(self) -> None:
        conn = await self._open()
        self._conn = conn
        try:
            await self._login(conn)
            self.connections += 1
            self._backoff.reset()
            self.connected.set()
            log.info("ESL events from %s:%s (connection %d)", *self._address, self.connections)
            if self._after_login is not None:
                await self._ask(conn, self._after_login)
            while not self._closed:
                async with asyncio.timeout(self._idle_timeout):
                    event = await conn.next_event()
                await self._put(event)
        finally:
            self._conn = None
            await conn.close()

    async def _put(self, event: EslEvent) -> None:
        if event.name != HEARTBEAT:
            await self.queue.put(event)

    async def _ask(self, conn: EslConnection, ask: _AfterLogin) -> None:
        async with asyncio.timeout(ask.timeout_s):
            output = await conn.api(ask.command)
        for event in conn.take_pending():
            await self._put(event)
        await self.queue.put(EslApiOutput(self.connections, ask.command, output))

    async def _open(self) -> EslConnection:
        host, port = self._address
        async with asyncio.timeout(self._connect_timeout):
            reader, writer = await asyncio.open_connection(
                host, port, limit=self._limits.stream_limit
            )
        return EslConnection(reader, writer, self._limits)

    async def _login(self, conn: EslConnection) -> None:
        async with asyncio.timeout(self._connect_timeout):
            await conn.expect(ContentType.AUTH_REQUEST)
            reply = await conn.command(f"auth {self._password}")
            if not reply.ok:
                raise EslAuthFailed(f"auth refused by {self._address}: {reply.text}")
            reply = await conn.command(f"event plain {self._subscription}")
            if not reply.ok:
                raise EslCommandError("event plain ...", reply.text)

    async def close(self) -> None:
        """Stop reconnecting and drop the current connection (``run`` then returns)."""
        self._closed = True
        conn = self._conn
        if conn is not None:
            conn.abort()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
