"""The trivial menu over AsyncAGI: the bench's "async" variant (bench/sipp_cpu.py).

    .venv/bin/python bench/trivial_asyncagi.py [--host 127.0.0.1 --port 5038]

The same calls as bench/trivial_fastagi.py (one ``EXEC Read`` of the static menu, one
``GET FULL VARIABLE``, one ``EXEC MSet`` with the same content), but with no TCP connection
per call: the dialplan runs ``AGI(agi:async)`` and every call is driven over ONE persistent
AMI connection. Asterisk announces a call with an ``AsyncAGIStart`` event; each command is an
``Action: AGI`` (``Channel``, ``Command``, ``CommandID``) whose result comes back in an
``AsyncAGIExec`` event carrying it as ``CommandId`` (sic; ``Result`` URL-encoded, e.g.
``200%20result%3D0%0A``); ``ASYNCAGI BREAK`` hands the channel back to the dialplan, and
``AsyncAGIEnd`` says the channel left AsyncAGI (also on a hang-up, when a queued command
may never run). The AMI user (bench/asterisk/manager.conf, ``ivrasync``) has only the
``agi`` class and name filters, so Asterisk sends this session nothing but the three
AsyncAGI events and the action responses.

Plain asyncio, no logging, minimal parsing. Prints ``ready`` once logged in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
from urllib.parse import unquote

from trivial_fastagi import INTENTS, MENU, TARGETS  # the same menu and outcome

USER, SECRET = "ivrasync", "ivrasync"


class AsyncAgi:
    """One AMI connection multiplexing every call in AsyncAGI: a command's result is matched
    by its CommandID (also used as the ActionID, so an error response fails that command)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ids = itertools.count()
        self.waiting: dict[str, asyncio.Future[str]] = {}  # CommandID -> decoded Result
        self.current: dict[str, str] = {}  # channel in AsyncAGI -> its CommandID in flight
        self.tasks: set[asyncio.Task[None]] = set()

    async def command(self, channel: str, line: str) -> str:
        if channel not in self.current:  # AsyncAGIEnd already seen: hung up
            raise ConnectionError(f"{channel} left AsyncAGI")
        cid = f"c{next(self.ids)}"
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting[cid] = future
        self.current[channel] = cid
        self.writer.write(
            f"Action: AGI\r\nActionID: {cid}\r\nChannel: {channel}\r\nCommand: {line}\r\n"
            f"CommandID: {cid}\r\n\r\n".encode()
        )
        reply = await future
        if not reply.startswith("200"):
            raise ConnectionError(reply.strip())
        return reply

    async def call(self, channel: str) -> None:
        with contextlib.suppress(ConnectionError):
            await self.command(channel, f'EXEC Read "IVR_READ,{MENU},1,,1,5"')
            reply = await self.command(channel, 'GET FULL VARIABLE "${IVR_READ}"')
            digit = reply.partition("(")[2].rstrip(")\r\n")
            intent = INTENTS.get(digit, "operator")
            target = TARGETS.get(intent, "queue:general")
            await self.command(
                channel,
                f'EXEC MSet "IVR_OUTCOME=routed,IVR_INTENT={intent},IVR_TARGET={target},'
                'IVR_DECISION=trivial"',
            )
        if channel in self.current:  # back to the dialplan; its result is not awaited
            self.writer.write(
                f"Action: AGI\r\nChannel: {channel}\r\nCommand: ASYNCAGI BREAK\r\n\r\n".encode()
            )

    def dispatch(self, fields: dict[str, str]) -> None:
        event = fields.get("Event")
        if event == "AsyncAGIExec":
            # Asterisk 22 sends "CommandId" (the docs say "CommandID")
            cid = fields.get("CommandId") or fields.get("CommandID", "")
            future = self.waiting.pop(cid, None)
            if future is not None and not future.done():
                future.set_result(unquote(fields.get("Result", "")))
        elif event == "AsyncAGIStart":
            channel = fields["Channel"]
            self.current[channel] = ""
            task = asyncio.create_task(self.call(channel))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif event == "AsyncAGIEnd":  # a command queued but never run gets no AsyncAGIExec
            self._fail(self.current.pop(fields.get("Channel", ""), ""), "left AsyncAGI")
        elif fields.get("Response") == "Error":  # e.g. the channel is gone
            self._fail(fields.get("ActionID", ""), fields.get("Message", "error"))

    def _fail(self, cid: str, why: str) -> None:
        future = self.waiting.pop(cid, None)
        if future is not None and not future.done():
            future.set_exception(ConnectionError(why))

    async def serve(self) -> None:
        while True:
            block = await self.reader.readuntil(b"\r\n\r\n")
            fields = dict(
                line.split(": ", 1) for line in block.decode().split("\r\n") if ": " in line
            )
            self.dispatch(fields)


async def login(host: str, port: int) -> AsyncAgi:
    reader, writer = await asyncio.open_connection(host, port)
    async with asyncio.timeout(5):
        await reader.readline()  # "Asterisk Call Manager/x.y.z"
        writer.write(
            f"Action: Login\r\nUsername: {USER}\r\nSecret: {SECRET}\r\nEvents: agi\r\n\r\n".encode()
        )
        reply = await reader.readuntil(b"\r\n\r\n")
    if b"Response: Success" not in reply:
        raise SystemExit(f"AMI login failed: {reply!r}")
    return AsyncAgi(reader, writer)


async def main(host: str, port: int) -> None:
    agi = await login(host, port)
    print("ready", flush=True)
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        await agi.serve()
    for task in list(agi.tasks):
        task.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5038)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
