"""The outbound Event Socket server: FreeSWITCH dials us, one connection per call.

Dialplan: ``<action application="socket" data="HOST:8084 async"/>``. For each connection
the server sends ``connect`` (the reply is the channel's data), ``myevents`` (this channel's
events) and ``resume``, all within ``connect_timeout``, then runs the handler with an
``EslChannel``. A connection that never completes that handshake costs one bounded wait
and is dropped. A handler that fails leaves ``IVR_OUTCOME=failed`` on the channel (best
effort) and the socket is closed; after a malformed frame nothing more is sent. Either way
FreeSWITCH goes on with the dialplan after ``socket``, where an outcome that is not
``routed`` (or is empty) leads to the static fallback menu.

A call still in progress when the stop's grace ends (``stop``, set by the server's
``_abandon``) is told so as Asterisk's are: its handler is cancelled (the flow records the
call), then ``set IVR_OUTCOME=failed`` goes to the channel and the socket closes once
FreeSWITCH has run it, or after ``REPORT_TIMEOUT`` (a dead peer, or a ``read`` still
playing: the ``set`` is queued behind it). Waiting matters: an application still queued when
the socket closes may never run. Not when the connection is out of step (the cancel came
between a command and its reply) nor for a call whose outcome is kept (``keep_outcome``):
those are closed as they are.

Going on after ``socket`` needs ``resume``: mod_event_socket answers it ``+OK``, sets the
listener's ``LFLAG_RESUME`` and the channel variable ``socket_resume=true``, and only with
one of them does it hand the channel back to the dialplan when the socket closes
(``listener_run``: ``CS_RESET``; ``socket_function``: ``CS_EXECUTE`` after the park). The
documentation of ``socket_resume``: "the dialplan will resume execution with the next action
after the call to the socket application". The sample dialplan also sets
``socket_resume=true`` before each ``socket``, for a session that ends before ``resume``.

No ``linger`` and no ``full``: every command sent here (``connect``, ``myevents``,
``resume``, ``sendmsg``) is served by mod_event_socket before its outbound gate
(``LFLAG_OUTBOUND && !LFLAG_FULL`` → ``-ERR command not found`` for ``linger``, ``api``,
``bgapi``, ``sendevent``, ``event``, ``log``, ...), so a per-call socket needs no rights over
the rest of the switch. ``linger`` would only keep the socket open after a hang-up for the
events that follow it; the engine ends the call at the first sign of one (``CHANNEL_HANGUP``,
a ``text/disconnect-notice``, EOF) and reads nothing after it.

Scripts: the channel variable ``IVR_SCRIPT``, set before ``socket``, picks the handler, like
the script name of an ``agi://`` URL (the ``socket`` application takes only an address and
flags). Unset or empty: the server's main handler (the IVR); otherwise the one
``register``-ed under that name (``reroute``). A name nobody registered is logged and the
socket closed untouched: the dialplan goes on with what it set before (its fallback).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ivr_engine.domain.errors import CallerHungUp, IvrEngineError
from ivr_engine.domain.models import CallOutcome
from ivr_engine.flows.variables import OUTCOME
from ivr_engine.stopping import cancel_and_wait
from ivr_engine.telephony.call_server import CallServer
from ivr_engine.telephony.esl.channel import DEFAULT_COMMAND_TIMEOUT, EslChannel
from ivr_engine.telephony.esl.connection import (
    CLOSE_TIMEOUT,
    DEFAULT_LIMITS,
    EslConnection,
    EslLimits,
)
from ivr_engine.telephony.esl.errors import EslCommandError, EslError
from ivr_engine.telephony.esl.protocol import ChannelData, decode_channel_data

log = logging.getLogger(__name__)

EslHandler = Callable[[ChannelData, EslChannel], Awaitable[None]]
REPORT_TIMEOUT = 2.0
STOP_WAIT_S = REPORT_TIMEOUT + CLOSE_TIMEOUT + 0.5  # a cut call's own end, then cancelled
SCRIPT_VARIABLE = "IVR_SCRIPT"
HANDSHAKE = ("myevents", "resume")  # after connect; all allowed without `full`


@dataclass(frozen=True, slots=True)
class OutboundLimits:
    connect_timeout: float = 5.0  # connect + myevents + resume
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT  # per application, completion included
    wire: EslLimits = DEFAULT_LIMITS


DEFAULT_OUTBOUND = OutboundLimits()


async def handshake(conn: EslConnection, limits: OutboundLimits) -> ChannelData:
    """``connect``, ``myevents``, ``resume``; the channel data from the connect reply. Any
    reply other than ``+OK...`` ends the session before the call starts."""
    async with asyncio.timeout(limits.connect_timeout):
        data = decode_channel_data(await conn.request("connect"))
        for line in HANDSHAKE:
            reply = await conn.command(line)
            if not reply.ok:
                raise EslCommandError(line, reply.text)
    return data


async def serve_esl_call(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handler: EslHandler,
    limits: OutboundLimits = DEFAULT_OUTBOUND,
    *,
    stop: asyncio.Event | None = None,
    opened: Callable[[], None] | None = None,
) -> None:
    """Serve one outbound-socket call on a stream pair, then close it. ``opened``: called
    once the call has started (handshake done); from then on, ``stop`` set ends the call
    as failed (``_run_until_stopped``)."""
    conn = EslConnection(reader, writer, limits.wire)
    try:
        try:
            data = await handshake(conn, limits)
        except (EslError, TimeoutError) as exc:
            log.warning("ESL connection dropped before the call started: %r", exc)
            return
        channel = EslChannel(
            conn, data, command_timeout=limits.command_timeout, prompt_suffix=".wav"
        )
        if opened is not None:
            opened()
        await _run_until_stopped(handler, data, channel, stop or asyncio.Event())
    finally:
        await conn.close()


async def _run_until_stopped(
    handler: EslHandler, data: ChannelData, channel: EslChannel, stop: asyncio.Event
) -> None:
    """The handler; if ``stop`` is set first, the handler is cancelled and the channel told
    ``IVR_OUTCOME=failed``."""
    call = asyncio.create_task(_run(handler, data, channel))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({call, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait({call, stopped})
    if not call.cancelled():
        call.result()  # it ended first: what it raised past ``_run`` goes on
        return
    log.info("call %s: ended by the stop; telling FreeSWITCH it failed", data.unique_id)
    await report_failure(channel)


async def _run(handler: EslHandler, data: ChannelData, channel: EslChannel) -> None:
    try:
        await handler(data, channel)
    except CallerHungUp as exc:
        log.debug("call %s: caller hung up (%s)", data.unique_id, exc)
    except Exception:
        log.exception("call %s: ESL handler failed", data.unique_id)
        await report_failure(channel)


async def report_failure(channel: EslChannel) -> None:
    """Best effort: ``IVR_OUTCOME=failed`` so the dialplan goes to its fallback; waits at
    most ``REPORT_TIMEOUT`` for FreeSWITCH to have run it."""
    if channel.outcome_kept:
        log.info("a call continued by SMS keeps its outcome: not told failed")
        return
    if not channel.usable:
        return  # out of step or gone: the socket closes and the outcome stays empty
    try:
        async with asyncio.timeout(REPORT_TIMEOUT):
            await channel.set_variable(OUTCOME, CallOutcome.FAILED.value)
    except (IvrEngineError, TimeoutError, OSError) as exc:
        log.debug("could not report the failure to the channel: %r", exc)


class EslOutboundServer(CallServer):
    """Accepts FreeSWITCH's outbound-socket connections; runs ``handler``, or the handler
    registered under the call's ``IVR_SCRIPT``, for each."""

    def __init__(
        self,
        handler: EslHandler,
        host: str = "127.0.0.1",
        port: int = 8084,
        *,
        backlog: int = 1024,
        limits: OutboundLimits = DEFAULT_OUTBOUND,
    ) -> None:
        super().__init__(
            "ESL outbound server", host, port, backlog=backlog,
            stream_limit=limits.wire.stream_limit, abandon_wait_s=STOP_WAIT_S,
        )  # fmt: skip
        self._handlers: dict[str, EslHandler] = {"": handler}
        self._limits = limits
        self._stops: dict[asyncio.StreamWriter, asyncio.Event] = {}  # calls past handshake

    def register(self, name: str, handler: EslHandler) -> None:
        """Serve calls whose ``IVR_SCRIPT`` is ``name``; a name can be registered once."""
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"invalid ESL script name {name!r}")
        if name in self._handlers:
            raise ValueError(f"an ESL handler for {name!r} is already registered")
        self._handlers[name] = handler

    async def _dispatch(self, data: ChannelData, channel: EslChannel) -> None:
        name = data.variable(SCRIPT_VARIABLE) or ""
        handler = self._handlers.get(name)
        if handler is None:
            log.error("call %s: no ESL script %r registered", data.unique_id, name)
            return
        await handler(data, channel)

    def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Coroutine[Any, Any, None]:
        stop = asyncio.Event()

        def opened() -> None:
            self._stops[writer] = stop

        async def serve() -> None:
            try:
                await serve_esl_call(
                    reader, writer, self._dispatch, self._limits, stop=stop, opened=opened
                )
            finally:
                self._stops.pop(writer, None)

        return serve()

    def _abandon(self, writer: asyncio.StreamWriter) -> bool:
        """The stop's grace is over: a started call ends itself, told ``failed`` (module
        docstring); one still in its handshake is cancelled and closed."""
        stop = self._stops.get(writer)
        if stop is None:
            return False
        stop.set()
        return True
