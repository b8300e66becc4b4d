"""One AMI connection: banner, bounded framed reads, ActionID correlation, keep-alive pings.

``AmiConnection.serve()`` reads messages until the connection fails and raises why
(``AmiConnectionLost``, ``AmiProtocolError``; any other exception, a bug, also fails every
waiting action and marks the connection broken before it propagates); it never returns. It
reads chunks of up to ``read_chunk_bytes`` and frames them with ``AmiFramer`` (framing.py): a
line longer than ``max_line_bytes`` or a message larger than ``max_message_bytes`` is a
protocol error (the client then reconnects), so a hostile or broken peer costs at most about
one chunk plus ``max_message_bytes`` of memory. Responses go to the action with the same
``ActionID``; after an ``EventList: start`` response, events with that ActionID are collected
for the action up to ``EventList: Complete``; every other event goes to ``on_event``, in
order.
Reconnecting is not done here: see ``client.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, NoReturn

from ivr_engine.telephony.ami.actions import HeaderValue, format_action
from ivr_engine.telephony.ami.errors import (
    AmiActionTimeout,
    AmiConnectionLost,
    AmiError,
    AmiPingTimeout,
    AmiProtocolError,
)
from ivr_engine.telephony.ami.framing import AmiFramer
from ivr_engine.telephony.ami.messages import AmiEvent, AmiResponse
from ivr_engine.telephony.ami.parsing import build_message, build_plain, decode_line, parse_banner

log = logging.getLogger(__name__)

EventSink = Callable[[AmiEvent], None]

_action_ids = itertools.count(1)  # process-wide: an ActionID is never reused
_MAX_ABANDONED_LISTS = 256


@dataclass(frozen=True, slots=True)
class AmiLimits:
    connect_timeout_s: float = 10.0  # TCP connect plus the banner
    login_timeout_s: float = 10.0
    close_timeout_s: float = 2.0  # Logoff's answer, then the socket close
    max_line_bytes: int = 64 * 1024
    max_message_bytes: int = 4 * 1024 * 1024  # a big `Command` output is one message
    max_list_events: int = 50_000  # events of one EventList action (CoreShowChannels ...)
    read_chunk_bytes: int = 64 * 1024  # one socket read; framed into messages by AmiFramer


DEFAULT_LIMITS = AmiLimits()


class AmiList(NamedTuple):
    """What a list action (``CoreShowChannels``, ``QueueStatus`` ...) returned: the response,
    the events in order, and the closing ``...Complete`` event (None when Asterisk answered
    without ``EventList: start``, e.g. ``Response: Error``)."""

    response: AmiResponse
    events: list[AmiEvent]
    complete: AmiEvent | None


@dataclass(eq=False)
class _Pending:
    name: str
    response: asyncio.Future[AmiResponse]
    list_done: asyncio.Future[AmiEvent] | None  # only for list actions
    events: list[AmiEvent] = field(default_factory=list)
    in_list: bool = False  # EventList: start seen


async def _read_banner(reader: asyncio.StreamReader) -> str:
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise AmiProtocolError("AMI banner line too long") from None
    except asyncio.IncompleteReadError:
        raise AmiConnectionLost("connection closed before the AMI banner") from None
    return parse_banner(decode_line(raw))


class AmiConnection:
    """A connected, not yet logged-in AMI stream pair; see the module docstring."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        version: str,
        limits: AmiLimits,
        on_event: EventSink,
    ) -> None:
        self.version = version  # from the banner, e.g. "11.0.0"
        self._reader = reader
        self._writer = writer
        self._limits = limits
        self._on_event = on_event
        self._pending: dict[str, _Pending] = {}
        self._abandoned: dict[str, None] = {}  # list actions given up on: drop their events
        self._error: AmiError | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, *, limits: AmiLimits, on_event: EventSink
    ) -> AmiConnection:
        """Connect and read the banner, within ``connect_timeout_s``."""
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(limits.connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    host, port, limit=limits.max_line_bytes
                )
                version = await _read_banner(reader)
        except BaseException as exc:
            if writer is not None:
                writer.transport.abort()
            if isinstance(exc, TimeoutError):
                raise AmiConnectionLost(
                    f"no AMI banner from {host}:{port} within {limits.connect_timeout_s} s"
                ) from None
            if isinstance(exc, OSError):
                raise AmiConnectionLost(f"cannot connect to AMI at {host}:{port}: {exc}") from exc
            raise
        return cls(reader, writer, version=version, limits=limits, on_event=on_event)

    @property
    def broken(self) -> bool:
        return self._error is not None

    async def serve(self) -> NoReturn:
        """Read and dispatch until the connection fails; raises the reason."""
        limits = self._limits
        framer = AmiFramer(
            max_line_bytes=limits.max_line_bytes, max_message_bytes=limits.max_message_bytes
        )
        try:
            while True:
                data = await self._reader.read(limits.read_chunk_bytes)
                if not data:
                    raise framer.eof_error()
                for raw in framer.feed_raw(data):
                    message = build_plain(raw) if isinstance(raw, str) else build_message(raw)
                    if message is None:  # not rate-limited: debug only
                        log.debug("AMI message neither response nor event, ignored: %.80r", raw)
                        continue
                    self._dispatch(message)
        except AmiError as exc:
            self.shutdown(exc)
            raise
        except OSError as exc:
            error = AmiConnectionLost(f"AMI connection lost: {exc!r}")
            self.shutdown(error)
            raise error from exc
        except Exception as exc:  # a bug: end this connection cleanly, the caller reports it
            self.shutdown(AmiConnectionLost(f"AMI reader failed: {exc!r}"))
            raise

    def _dispatch(self, message: AmiResponse | AmiEvent) -> None:
        if not self._pending and not self._abandoned and isinstance(message, AmiEvent):
            self._on_event(message)  # what the rules below decide then, without the ActionID
            return
        action_id = message.action_id
        pending = self._pending.get(action_id) if action_id is not None else None
        if isinstance(message, AmiResponse):
            if pending is None or pending.response.done():
                log.debug("AMI response for no waiting action (ActionID %r), dropped", action_id)
                if action_id in self._abandoned and not message.starts_list:
                    del self._abandoned[action_id]  # no list follows: nothing more to drop
                return
            pending.response.set_result(message)
            if pending.list_done is not None and message.starts_list:
                pending.in_list = True
            else:
                del self._pending[action_id or ""]
        elif pending is not None and pending.in_list:
            self._collect(action_id or "", pending, message)
        elif action_id is not None and action_id in self._abandoned:
            if message.ends_list:
                del self._abandoned[action_id]
        else:
            self._on_event(message)

    def _collect(self, action_id: str, pending: _Pending, event: AmiEvent) -> None:
        assert pending.list_done is not None
        if event.ends_list:
            del self._pending[action_id]
            if not pending.list_done.done():  # cancelled: its ``finally`` has not run yet
                pending.list_done.set_result(event)
            return
        if len(pending.events) >= self._limits.max_list_events:
            raise AmiProtocolError(
                f"{pending.name}: more than {self._limits.max_list_events} list events"
            )
        pending.events.append(event)

    async def request(
        self,
        name: str,
        headers: Mapping[str, HeaderValue],
        timeout_s: float,
        *,
        collect_list: bool = False,
    ) -> AmiList:
        """Send one action and wait for its response (and, with ``collect_list``, its list)."""
        if self._error is not None:
            raise AmiConnectionLost(f"AMI connection already lost: {self._error}")
        action_id = f"ivr-{next(_action_ids)}"
        data = format_action(name, action_id, headers)  # InvalidAction before anything is sent
        loop = asyncio.get_running_loop()
        list_done = loop.create_future() if collect_list else None
        pending = _Pending(name, loop.create_future(), list_done)
        self._pending[action_id] = pending
        try:
            async with asyncio.timeout(timeout_s):
                self._writer.write(data)
                await self._writer.drain()
                response = await pending.response
                if list_done is None or not response.starts_list:
                    return AmiList(response, [], None)
                complete = await list_done
                return AmiList(response, pending.events, complete)
        except TimeoutError:
            raise AmiActionTimeout(f"no answer to AMI action {name} within {timeout_s} s") from None
        except OSError as exc:
            raise AmiConnectionLost(f"AMI connection lost while sending {name}: {exc!r}") from exc
        finally:
            if self._pending.pop(action_id, None) is not None and list_done is not None:
                self._abandon(action_id)  # timed out or cancelled before its list ended

    def _abandon(self, action_id: str) -> None:
        self._abandoned[action_id] = None
        while len(self._abandoned) > _MAX_ABANDONED_LISTS:
            del self._abandoned[next(iter(self._abandoned))]

    async def keepalive(self, interval_s: float, timeout_s: float) -> NoReturn:
        """Ping every ``interval_s``; raise ``AmiPingTimeout`` on no ``Success`` in time."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                result = await self.request("Ping", {}, timeout_s)
            except AmiActionTimeout:
                raise AmiPingTimeout(f"no answer to AMI Ping within {timeout_s} s") from None
            if result.response.response.lower() != "success":
                raise AmiPingTimeout(f"AMI Ping answered {result.response.to_dict()!r}")

    def shutdown(self, error: AmiError) -> None:
        """Mark the connection failed and fail every waiting action with ``error``."""
        if self._error is None:
            self._error = error
        lost = AmiConnectionLost(f"AMI connection lost before the answer: {error}")
        for pending in self._pending.values():
            if not pending.response.done():
                pending.response.set_exception(lost)
            elif pending.list_done is not None and not pending.list_done.done():
                pending.list_done.set_exception(lost)
        self._pending.clear()

    async def close(self) -> None:
        """Close the socket, waiting at most ``close_timeout_s`` before aborting it."""
        self._writer.close()
        try:
            async with asyncio.timeout(self._limits.close_timeout_s):
                await self._writer.wait_closed()
        except (TimeoutError, OSError):
            self._writer.transport.abort()
