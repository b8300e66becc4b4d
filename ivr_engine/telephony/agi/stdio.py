"""Classic AGI over stdin/stdout (one process per call), on the same protocol layer.

The AGI pipes are moved to private descriptors and fds 0/1 are pointed at ``/dev/null``, so
a stray ``print`` can never corrupt the AGI channel. Logs go to stderr. When the session ends
the AGI pipe is closed at once, so Asterisk resumes the dialplan while the process tidies up.
Classic AGI reports a hangup with ``SIGHUP`` (unless ``AGISIGHUP=no``): it marks the channel
hung up instead of killing the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from ivr_engine.telephony.agi.channel import AgiChannel
from ivr_engine.telephony.agi.protocol import AgiRequest
from ivr_engine.telephony.agi.server import DEFAULT_LIMITS, AgiLimits, Handler, handle_agi_streams
from ivr_engine.telephony.hangup_signal import HangupSignal


def _take_fd(fd: int, flags: int) -> int:
    """A private duplicate of ``fd``; ``fd`` itself now points at /dev/null."""
    private = os.dup(fd)
    null = os.open(os.devnull, flags)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
    return private


async def _open_stdio_streams(
    max_line_bytes: int,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.BaseTransport]:
    """Streams on the process's AGI pipes (stdin/stdout must be pipes, sockets or ttys)."""
    loop = asyncio.get_running_loop()
    in_fd = _take_fd(0, os.O_RDONLY)
    out_fd = _take_fd(1, os.O_WRONLY)
    reader = asyncio.StreamReader(limit=max_line_bytes + 2)
    read_transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(in_fd, "rb", buffering=0)
    )
    # A StreamReaderProtocol (not FlowControlMixin) so that StreamWriter.wait_closed() works.
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()),
        os.fdopen(out_fd, "wb", buffering=0),
    )
    return reader, asyncio.StreamWriter(transport, protocol, None, loop), read_transport


async def run_stdio_agi(
    handler: Handler, *, limits: AgiLimits = DEFAULT_LIMITS, hangup: HangupSignal | None = None
) -> None:
    """Serve the one AGI session on stdin/stdout with ``handler`` (any script name).

    ``hangup``: the one ``catch_hangup`` installed when the script started, so a SIGHUP
    that came before this (the caller hung up during the start) still marks the channel.
    The SIGHUP handler stays installed until the event loop closes, so a late SIGHUP cannot
    kill the process while it finishes its own work after the call.
    """
    hangup = hangup if hangup is not None else HangupSignal()
    reader, writer, read_transport = await _open_stdio_streams(limits.max_line_bytes)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, hangup)

    async def session(request: AgiRequest, channel: AgiChannel) -> None:
        hangup.attach(channel)
        await handler(request, channel)

    try:
        await handle_agi_streams(reader, writer, {}, default=session, limits=limits)
    finally:
        read_transport.close()
