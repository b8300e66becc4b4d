"""``EslConnection``: frames over one asyncio stream pair, pulled by whoever waits.

No background task: ``command`` writes one command and reads frames until its
``command/reply`` (or ``api/response``); events read on the way are kept, in order, for
``next_event``. ESL answers commands in the order they were sent, so one command at a time
(a lock) keeps replies matched. A header block is read with ``readuntil`` under the stream's
byte limit and a body with ``readexactly`` of a checked ``Content-Length``: a peer that sends
half a frame and stalls costs one bounded wait, never a spinning loop. A read interrupted
inside a frame (timeout, cancellation, malformed bytes), or an event refused (it does not
decode) while a command waits for its reply, leaves the stream out of step: every later call
raises ``EslProtocolError`` without reading, so that reply never goes to the next command.
An event refused by ``next_event`` leaves the stream in step (no reply is pending).
A cancellation while waiting for a frame's first header line leaves it in step too
(``readuntil`` takes nothing until a whole header block is there), unless a command's reply
is still owed: so a call cut by the stop can still tell the channel it failed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from ivr_engine.telephony.esl.errors import EslDisconnected, EslProtocolError
from ivr_engine.telephony.esl.protocol import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    ContentType,
    EslEvent,
    EslFrame,
    EslReply,
    body_length,
    check_frame,
    decode_event,
    decode_reply,
    encode_command,
    is_event,
    parse_header_block,
)

log = logging.getLogger(__name__)
MAX_PENDING_EVENTS = 10_000  # events read while waiting for a reply, not yet taken
CLOSE_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class EslLimits:
    max_header_bytes: int = MAX_HEADER_BYTES
    max_body_bytes: int = MAX_BODY_BYTES

    @property
    def stream_limit(self) -> int:
        """The ``StreamReader`` limit: ``readuntil`` fails past one header block."""
        return self.max_header_bytes + 2


DEFAULT_LIMITS = EslLimits()


class EslConnection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        limits: EslLimits = DEFAULT_LIMITS,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._limits = limits
        self._events: collections.deque[EslEvent] = collections.deque()
        self._lock = asyncio.Lock()
        self._broken: str | None = None
        self._inside_frame = False  # a header block taken, its body not yet
        self.disconnect_notice: EslFrame | None = None

    @property
    def broken(self) -> bool:
        return self._broken is not None

    # ------------------------------------------------------------------ reading

    async def read_frame(self) -> EslFrame:
        """The next frame; ``EslDisconnected`` at EOF, ``EslProtocolError`` if malformed."""
        if self._broken is not None:
            raise EslProtocolError(f"ESL stream out of step: {self._broken}")
        self._broken = "a frame was only partly read"
        self._inside_frame = False
        try:
            frame = await self._read_one()
        except asyncio.CancelledError:
            if not self._inside_frame:  # nothing of a frame taken: still in step
                self._broken = None
            raise
        except EslDisconnected:
            self._broken = "the peer closed the connection"
            raise
        except EslProtocolError as exc:
            self._broken = str(exc)
            raise
        self._broken = None
        return frame

    async def _read_one(self) -> EslFrame:
        try:
            head = await self._reader.readuntil(b"\n\n")
            while head.strip(b"\r\n") == b"":  # stray blank lines between frames
                head = await self._reader.readuntil(b"\n\n")
            self._inside_frame = True
            headers = parse_header_block(head, self._limits.max_header_bytes)
            check_frame(headers)
            length = body_length(headers, self._limits.max_body_bytes)
            body = await self._reader.readexactly(length) if length else b""
        except asyncio.IncompleteReadError as exc:
            inside = " inside a frame" if exc.partial else ""
            raise EslDisconnected(f"ESL connection closed by the peer{inside}") from None
        except asyncio.LimitOverrunError:
            limit = self._limits.max_header_bytes
            raise EslProtocolError(f"ESL header block larger than {limit} bytes") from None
        except ConnectionError as exc:
            raise EslDisconnected(f"ESL connection lost: {exc!r}") from None
        return EslFrame(headers, body)

    async def _next_reply(self) -> EslFrame:
        """Frames up to the next reply; events are kept, a disconnect notice raises."""
        while True:
            frame = await self.read_frame()
            if frame.content_type in (ContentType.COMMAND_REPLY, ContentType.API_RESPONSE):
                return frame
            try:
                self._take_unsolicited(frame)
            except EslProtocolError as exc:  # the reply is still unread: never the next one's
                self._broken = f"a command's reply was left unread: {exc}"
                raise

    def _take_unsolicited(self, frame: EslFrame) -> None:
        if is_event(frame):
            if len(self._events) >= MAX_PENDING_EVENTS:
                raise EslProtocolError(f"more than {MAX_PENDING_EVENTS} events not taken")
            self._events.append(decode_event(frame))
        elif frame.content_type == ContentType.DISCONNECT_NOTICE:
            self.disconnect_notice = frame
            raise EslDisconnected(f"disconnect notice: {frame.body[:80]!r}")
        elif frame.content_type == ContentType.RUDE_REJECTION:
            raise EslDisconnected(f"rejected by FreeSWITCH: {frame.body[:80]!r}")
        else:
            log.debug("ESL frame %r ignored", frame.content_type)

    def take_pending(self) -> list[EslEvent]:
        """The events already read (while waiting for replies) and not taken yet, in order."""
        events = list(self._events)
        self._events.clear()
        return events

    async def next_event(self) -> EslEvent:
        """The next event (kept ones first). Callers bound the wait with a timeout."""
        if self._events:
            return self._events.popleft()
        async with self._lock:
            while not self._events:
                frame = await self.read_frame()
                if frame.content_type in (ContentType.COMMAND_REPLY, ContentType.API_RESPONSE):
                    log.debug("ESL reply with no command waiting, ignored")
                    continue
                self._take_unsolicited(frame)
            return self._events.popleft()

    # ------------------------------------------------------------------ commands

    async def send_raw(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except ConnectionError as exc:
            raise EslDisconnected(f"ESL connection lost while writing: {exc!r}") from None

    async def request(self, line: str, headers: Iterable[tuple[str, str]] = ()) -> EslFrame:
        """Send one command and return its reply frame (``command/reply``/``api/response``)."""
        data = encode_command(line, headers)
        async with self._lock:
            if self._broken is not None:
                raise EslProtocolError(f"ESL stream out of step: {self._broken}")
            try:
                await self.send_raw(data)
                return await self._next_reply()
            except asyncio.CancelledError:  # the reply would go to the next command
                self._broken = self._broken or "cancelled before a command's reply"
                raise

    async def command(self, line: str, headers: Iterable[tuple[str, str]] = ()) -> EslReply:
        return decode_reply(await self.request(line, headers))

    async def api(self, command: str) -> str:
        frame = await self.request(f"api {command}")
        if frame.content_type != ContentType.API_RESPONSE:
            raise EslProtocolError(f"expected api/response, got {frame.content_type!r}")
        return frame.body.decode("utf-8", "replace")

    async def expect(self, content_type: ContentType) -> EslFrame:
        """The next frame, which must be ``content_type`` (``auth/request`` at login)."""
        frame = await self.read_frame()
        if frame.content_type != content_type:
            raise EslProtocolError(f"expected {content_type}, got {frame.content_type!r}")
        return frame

    async def close(self) -> None:
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()
        except OSError:
            pass

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.transport.abort()
