"""FastAGI server: reads each call's header block, dispatches on the script name.

A connection that never completes a valid header block costs one bounded read under a
deadline and is dropped. A handler that fails leaves ``IVR_OUTCOME=failed`` on the channel
(best effort) so the dialplan sends the caller to its fallback instead of dead air.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ivr_engine.domain.errors import CallerHungUp, IvrEngineError
from ivr_engine.domain.models import CallOutcome
from ivr_engine.flows.variables import OUTCOME
from ivr_engine.telephony.agi.channel import AgiChannel
from ivr_engine.telephony.agi.protocol import (
    MAX_LINE_CHARS,
    AgiHeaderError,
    AgiRequest,
    parse_header_line,
    parse_request,
)
from ivr_engine.telephony.call_server import CallServer

log = logging.getLogger(__name__)

Handler = Callable[[AgiRequest, AgiChannel], Awaitable[None]]

REPORT_TIMEOUT = 2.0  # for the best-effort "IVR_OUTCOME=failed" after an error
FAILED_ON_STOP = f"SET VARIABLE {OUTCOME} {CallOutcome.FAILED.value}\n".encode()
CLOSE_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class AgiLimits:
    header_timeout: float = 5.0  # seconds for the whole header block
    max_header_bytes: int = 16 * 1024
    command_timeout: float = 120.0  # seconds per command, reply included
    max_line_bytes: int = MAX_LINE_CHARS


DEFAULT_LIMITS = AgiLimits()


async def read_request(reader: asyncio.StreamReader, limits: AgiLimits) -> AgiRequest:
    """Read and parse the header block; any failure is one ``AgiHeaderError``."""
    try:
        async with asyncio.timeout(limits.header_timeout):
            env = await _read_header_block(reader, limits.max_header_bytes)
    except TimeoutError:
        raise AgiHeaderError(f"header block incomplete after {limits.header_timeout}s") from None
    except asyncio.IncompleteReadError:
        raise AgiHeaderError("connection closed inside the header block") from None
    except asyncio.LimitOverrunError:
        raise AgiHeaderError("header line longer than the line limit") from None
    except ConnectionError as exc:
        raise AgiHeaderError(f"connection lost inside the header block: {exc!r}") from None
    return parse_request(env, received=time.perf_counter())


async def _read_header_block(reader: asyncio.StreamReader, max_bytes: int) -> dict[str, str]:
    env: dict[str, str] = {}
    total = 0
    while True:
        raw = await reader.readuntil(b"\n")
        total += len(raw)
        if total > max_bytes:
            raise AgiHeaderError(f"header block larger than {max_bytes} bytes")
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            return env
        key, value = parse_header_line(line)
        env[key] = value


async def handle_agi_streams(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handlers: Mapping[str, Handler],
    *,
    default: Handler | None = None,
    limits: AgiLimits = DEFAULT_LIMITS,
    opened: Callable[[AgiChannel], None] | None = None,
) -> None:
    """Serve one AGI session on a stream pair, then close the writer. ``opened``: told the
    call's channel once the header is read."""
    try:
        try:
            request = await read_request(reader, limits)
        except AgiHeaderError as exc:
            log.debug("AGI connection dropped before a call started: %s", exc)
            return
        channel = AgiChannel(
            reader,
            writer,
            command_timeout=limits.command_timeout,
            max_line_bytes=limits.max_line_bytes,
        )
        if opened is not None:
            opened(channel)
        handler = handlers.get(request.script, default)
        if handler is None:
            await _refuse(request, channel)
        else:
            await _run(handler, request, channel)
    finally:
        await _close(writer)


async def _run(handler: Handler, request: AgiRequest, channel: AgiChannel) -> None:
    try:
        await handler(request, channel)
    except CallerHungUp as exc:
        log.debug("call %s: caller hung up (%s)", request.uniqueid, exc)
    except Exception:
        log.exception("call %s: AGI script %r failed", request.uniqueid, request.script)
        await _report_failure(channel)


async def _refuse(request: AgiRequest, channel: AgiChannel) -> None:
    log.warning("call %s: no AGI script named %r", request.uniqueid, request.script)
    await _report_failure(channel, f"ivr-engine: no AGI script named {request.script!r}")


async def _report_failure(channel: AgiChannel, verbose: str | None = None) -> None:
    """Best effort: ``IVR_OUTCOME=failed`` so the dialplan routes to its fallback."""
    try:
        async with asyncio.timeout(REPORT_TIMEOUT):
            await channel.set_variable(OUTCOME, CallOutcome.FAILED.value)
            if verbose is not None:
                await channel.verbose(verbose)
    except (IvrEngineError, TimeoutError, OSError) as exc:
        log.debug("could not report the failure to the channel: %r", exc)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    if writer.transport.get_write_buffer_size() == 0:
        return  # nothing left to send: the transport closes on the next loop pass
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except OSError:
        pass


class FastAgiServer(CallServer):
    """Accepts FastAGI connections and runs the handler registered for each script name."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4573,
        *,
        backlog: int = 1024,
        header_timeout: float = 5.0,
        command_timeout: float = 120.0,
        max_header_bytes: int = 16 * 1024,
        max_line_bytes: int = MAX_LINE_CHARS,
    ) -> None:
        super().__init__(
            "FastAGI server", host, port, backlog=backlog, stream_limit=max_line_bytes + 2
        )
        self._limits = AgiLimits(header_timeout, max_header_bytes, command_timeout, max_line_bytes)
        self._handlers: dict[str, Handler] = {}
        # each call's channel, for ``_abandon``; removed when its connection is served (not a
        # WeakKeyDictionary: the channel holds its writer, so an entry would never go)
        self._channels: dict[asyncio.StreamWriter, AgiChannel] = {}

    def register(self, name: str, handler: Handler) -> None:
        """Serve ``agi://host/<name>``; a name can be registered once."""
        if not name or "?" in name or name.startswith("/"):
            raise ValueError(f"invalid AGI script name {name!r}")
        if name in self._handlers:
            raise ValueError(f"an AGI handler for {name!r} is already registered")
        self._handlers[name] = handler

    @property
    def handlers(self) -> Mapping[str, Handler]:
        return MappingProxyType(self._handlers)

    def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Coroutine[Any, Any, None]:
        def opened(channel: AgiChannel) -> None:
            self._channels[writer] = channel

        async def serve() -> None:
            try:
                await handle_agi_streams(
                    reader, writer, self.handlers, limits=self._limits, opened=opened
                )
            finally:
                self._channels.pop(writer, None)

        return serve()

    def _abandon(self, writer: asyncio.StreamWriter) -> bool:
        """``IVR_OUTCOME=failed`` queued on the connection, not awaited: Asterisk runs it
        after the command it is in (a ``Read`` the caller is answering), then sees the
        connection close, and the dialplan plays its static menu (``ivr-fail``), not dead
        air. A line of its own in the write buffer: never inside another command's. Not for
        a call whose outcome is kept (``AgiChannel.keep_outcome``: continued by SMS, the
        caller already has the link): the variables it is writing stand."""
        channel = self._channels.get(writer)
        if channel is not None and channel.outcome_kept:
            log.info("a call continued by SMS keeps its outcome: not told failed on the stop")
            return False
        if not writer.is_closing():
            writer.write(FAILED_ON_STOP)
        return False  # the call is cancelled now: Asterisk reads the line on its own
