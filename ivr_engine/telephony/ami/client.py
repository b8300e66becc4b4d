"""``AmiClient``: a long-lived AMI session that reconnects, re-logs in and detects dead peers.

Lifecycle, run by one background task started by ``start()``::

    connect + banner → Login → connected (ping every ping_interval_s) → lost → back off → ...

* A lost connection (closed, reset, protocol error, or no answer to ``Ping`` within
  ``ping_timeout_s``) is dropped and retried after an exponential back-off with jitter
  (``backoff=(base_s, cap_s)``); the back-off resets after each successful login.
* A refused login sets ``state`` to ``login_failed``, makes ``wait_connected`` raise
  ``LoginFailed`` with Asterisk's message, and is retried only at the capped delay.
* Actions are never queued or re-sent across connections (``Originate`` is not idempotent):
  while not connected ``action`` raises ``AmiNotConnected``; actions waiting when the
  connection drops raise ``AmiConnectionLost``.
* ``server_filter``: event names Asterisk should send at all, asked for right after each
  login (the client counts as connected by then: a ``FullyBooted`` subscriber may act at
  once) with one ``Filter`` action per name (``login.ServerFilter``). It only saves work:
  subscriptions still filter here. Refused whole, the client warns once and reads
  unfiltered from then on; taken only in part, it logs in again without a filter.
* ``close()`` sends ``Logoff`` when connected, stops the task wherever it is (connecting,
  backing off), fails waiting actions with ``AmiConnectionLost`` and ends every
  subscription (iteration stops after the events already queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from enum import StrEnum
from types import TracebackType
from typing import NoReturn, Self

from ivr_engine.telephony.ami.actions import HeaderValue
from ivr_engine.telephony.ami.backoff import Backoff, make_backoff
from ivr_engine.telephony.ami.connection import DEFAULT_LIMITS, AmiConnection, AmiLimits, AmiList
from ivr_engine.telephony.ami.errors import (
    AmiClosed,
    AmiConnectionLost,
    AmiConnectTimeout,
    AmiError,
    AmiNotConnected,
    LoginFailed,
)
from ivr_engine.telephony.ami.events import DEFAULT_MAXSIZE, EventFilter, Subscription
from ivr_engine.telephony.ami.login import ServerFilter, log_in
from ivr_engine.telephony.ami.messages import AmiEvent, AmiResponse

log = logging.getLogger(__name__)


class AmiState(StrEnum):
    IDLE = "idle"  # not started
    CONNECTING = "connecting"  # connecting, logging in, or backing off after a failure
    CONNECTED = "connected"  # logged in
    LOGIN_FAILED = "login_failed"  # the last attempt was refused; retrying at the capped delay
    CLOSED = "closed"


class AmiClient:
    """See the module docstring. ``events`` is the Login ``Events`` header: ``on``, ``off``
    or a comma-separated list of event classes (``call,user``)."""

    def __init__(
        self,
        host: str,
        port: int = 5038,
        username: str = "",
        secret: str = "",
        *,
        ping_interval_s: float | None = 10.0,
        ping_timeout_s: float = 5.0,
        backoff: tuple[float, float] | Backoff = (0.5, 30.0),
        events: str = "on",
        server_filter: tuple[str, ...] = (),
        limits: AmiLimits = DEFAULT_LIMITS,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._backoff = make_backoff(backoff)
        self._events = events
        self._server_filter = ServerFilter(server_filter)
        self.server_filtered = False  # this session's events are filtered by Asterisk
        self._limits = limits
        self._state = AmiState.IDLE
        self._state_changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: AmiConnection | None = None
        self._subscriptions: list[Subscription] = []
        self._closing = False
        self.last_error: AmiError | None = None
        self.logins = 0  # successful logins so far (1 + number of re-logins)
        self.version: str | None = None  # AMI version from the last banner

    def __repr__(self) -> str:
        return f"<AmiClient {self.username}@{self.host}:{self.port} {self._state}>"

    @property
    def state(self) -> AmiState:
        return self._state

    def _set_state(self, state: AmiState) -> None:
        if state is not self._state:
            log.info("AMI %s:%d: %s -> %s", self.host, self.port, self._state, state)
            self._state = state
            self._state_changed.set()
            self._state_changed = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting in the background (returns at once; see ``wait_connected``)."""
        if self._closing:
            raise AmiClosed("AMI client is closed")
        if self._task is None:
            self._set_state(AmiState.CONNECTING)
            self._task = asyncio.create_task(self._run(), name=f"ami-{self.host}:{self.port}")
            self._task.add_done_callback(_log_task_failure)

    async def wait_connected(self, timeout_s: float) -> None:
        """Return once logged in. ``LoginFailed`` if the credentials were refused,
        ``AmiConnectTimeout`` after ``timeout_s``, ``AmiClosed`` if closed."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._state is not AmiState.CONNECTED:
                    if self._state is AmiState.LOGIN_FAILED:
                        raise self.last_error or LoginFailed("AMI login refused")
                    if self._state is AmiState.CLOSED:
                        raise AmiClosed("AMI client is closed")
                    if self._state is AmiState.IDLE:
                        raise AmiNotConnected("AMI client not started (call start())")
                    await self._state_changed.wait()
        except TimeoutError:
            raise AmiConnectTimeout(
                f"AMI {self.host}:{self.port} not connected after {timeout_s} s"
                f" (last error: {self.last_error})"
            ) from None

    async def close(self) -> None:
        """Log off (if connected), stop reconnecting, end subscriptions. Idempotent."""
        if self._state is AmiState.CLOSED:
            return
        self._closing = True
        conn = self._conn
        if conn is not None and self._state is AmiState.CONNECTED:
            with contextlib.suppress(AmiError):
                await conn.request("Logoff", {}, self._limits.close_timeout_s)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for subscription in list(self._subscriptions):
            subscription.end()
        self._set_state(AmiState.CLOSED)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- actions and events -------------------------------------------------------------

    def _live(self) -> AmiConnection:
        if self._closing:
            raise AmiClosed("AMI client is closed")
        if self._conn is None or self._state is not AmiState.CONNECTED:
            raise AmiNotConnected(f"AMI {self.host}:{self.port} is {self._state}")
        return self._conn

    async def action(
        self, name: str, /, *, timeout_s: float = 10.0, **headers: HeaderValue
    ) -> AmiResponse:
        """Send an action, return its response (``response.ok``, ``raise_for_error()``).
        A list value repeats the header: ``Variable=["A=1", "B=2"]``."""
        result = await self._live().request(name, headers, timeout_s)
        return result.response

    async def action_list(
        self, name: str, /, *, timeout_s: float = 30.0, **headers: HeaderValue
    ) -> AmiList:
        """Send a list action and collect its events up to ``EventList: Complete``."""
        return await self._live().request(name, headers, timeout_s, collect_list=True)

    def subscribe(
        self,
        *patterns: str,
        where: EventFilter | None = None,
        maxsize: int = DEFAULT_MAXSIZE,
    ) -> Subscription:
        """Events whose name matches a glob (``"Hangup"``, ``"Agent*"``; none = all) and
        ``where``; bounded at ``maxsize`` (see ``events.Subscription``)."""
        subscription = Subscription(
            patterns, where=where, maxsize=maxsize, on_close=self._unsubscribe
        )
        if self._state is AmiState.CLOSED:
            subscription.end()
        else:
            self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    def _publish(self, event: AmiEvent) -> None:
        for subscription in tuple(self._subscriptions):
            subscription.offer(event)

    # --- the background task ------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self._session()
            except LoginFailed as exc:
                delay = self._backoff.cap_delay()
                self._failed(exc, AmiState.LOGIN_FAILED, delay)
            except AmiError as exc:
                delay = self._backoff.next_delay()
                self._failed(exc, AmiState.CONNECTING, delay)
            except Exception as exc:  # a bug: report it, but keep the client alive
                log.exception("AMI %s:%d: unexpected failure", self.host, self.port)
                delay = self._backoff.next_delay()
                self._failed(AmiError(f"unexpected: {exc!r}"), AmiState.CONNECTING, delay)
            if not self._closing:
                await asyncio.sleep(delay)

    def _failed(self, error: AmiError, state: AmiState, delay: float) -> None:
        self.last_error = error
        if self._closing:
            return
        self._set_state(state)
        level = logging.ERROR if state is AmiState.LOGIN_FAILED else logging.WARNING
        log.log(level, "AMI %s:%d: %s; retrying in %.2f s", self.host, self.port, error, delay)

    async def _session(self) -> NoReturn:
        conn = await AmiConnection.open(
            self.host, self.port, limits=self._limits, on_event=self._publish
        )
        self.version = conn.version
        tasks = [asyncio.create_task(conn.serve(), name="ami-reader")]
        try:
            await self._login(conn)
            if self._ping_interval_s:
                ping = conn.keepalive(self._ping_interval_s, self._ping_timeout_s)
                tasks.append(asyncio.create_task(ping, name="ami-ping"))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises why the connection ended
            raise AmiError("AMI connection task ended without an error")  # not reached
        finally:
            self._conn = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            reason = "AMI client closed" if self._closing else "AMI connection dropped"
            conn.shutdown(AmiConnectionLost(reason))
            await conn.close()

    async def _login(self, conn: AmiConnection) -> None:
        await log_in(
            conn,
            host=self.host,
            port=self.port,
            username=self.username,
            secret=self._secret,
            events=self._events,
            timeout_s=self._limits.login_timeout_s,
        )
        self.logins += 1
        self.server_filtered = False
        self._backoff.reset()
        self._conn = conn
        self._set_state(AmiState.CONNECTED)
        if self._server_filter.names:
            where = f"AMI {self.host}:{self.port}"
            timeout_s = self._limits.login_timeout_s
            self.server_filtered = await self._server_filter.install(conn, timeout_s, where)


def _log_task_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("AMI client task failed", exc_info=task.exception())
