"""A tiny asyncio Asterisk Manager Interface (AMI) client for the end-to-end tests.

AMI speaks ``Key: Value`` lines ended by CRLF; a blank line ends a message. After ``Login``
(with ``Events: on``) Asterisk pushes every event; this client keeps them all, in order, in
``AmiClient.events`` and lets a test wait for one with ``wait_for(predicate)`` (synchronised
on arriving events, no polling or sleeping).

Observed with Asterisk 22.10 (FastAGI): every AGI command raises ``AGIExecStart``
(``Channel``, ``CallerIDNum``, ``Uniqueid``, ``CommandId``, ``Command``: the line exactly as
sent) and, when it completes, ``AGIExecEnd`` (same ``CommandId`` plus ``ResultCode``, e.g.
``200``/``511``, and ``Result``, e.g. ``Success``). Both need the ``agi`` read permission.
Commands sent after the caller hung up raise them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Message = dict[str, str]
Predicate = Callable[[Message], bool]


class AmiError(RuntimeError):
    """Login refused, action failed or connection lost."""


class AmiTimeout(AssertionError):
    """No matching event arrived in time (an AssertionError so tests report it plainly)."""


@dataclass(frozen=True)
class AgiExec:
    """One AGI command as Asterisk reported it over AMI."""

    command: str
    command_id: str
    result_code: str | None  # None: no AGIExecEnd (yet)
    result: str | None


def event_matches(event: Mapping[str, str], **fields: str) -> bool:
    """True if every ``field=value`` is in the event (``Event`` / ``UserEvent`` etc.)."""
    return all(event.get(key) == value for key, value in fields.items())


class AmiClient:
    """Connect, log in, collect every event; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5038) -> None:
        self.host = host
        self.port = port
        self.banner = ""
        self.events: list[Message] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._responses: dict[str, asyncio.Future[Message]] = {}
        self._action_ids = itertools.count(1)
        self._closed_error: BaseException | None = None

    # --- connection -------------------------------------------------------------------

    async def connect(
        self, username: str = "ivrtest", secret: str = "ivrtest", timeout_s: float = 10.0
    ) -> None:
        reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), timeout_s
        )
        self._reader = reader
        banner = await asyncio.wait_for(reader.readline(), timeout_s)
        self.banner = banner.decode(errors="replace").strip()
        if not self.banner.startswith("Asterisk Call Manager"):
            raise AmiError(f"not an AMI server: {self.banner!r}")
        self._task = asyncio.create_task(self._read_loop(), name="ami-reader")
        reply = await self.action("Login", timeout_s=timeout_s, Username=username, Secret=secret)
        if reply.get("Response") != "Success":
            raise AmiError(f"AMI login refused: {reply}")

    async def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.action("Logoff", timeout_s=2), 3)
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> AmiClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- actions ----------------------------------------------------------------------

    async def action(self, name: str, *, timeout_s: float = 10.0, **headers: str) -> Message:
        """Send an action and return its response message (matched by ActionID)."""
        if self._writer is None:
            raise AmiError("not connected")
        action_id = f"ivrtest-{next(self._action_ids)}"
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._responses[action_id] = future
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        lines += [f"{key}: {value}" for key, value in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self._writer.drain()
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._responses.pop(action_id, None)

    async def command(self, cli: str) -> str:
        """Run an Asterisk CLI command through AMI and return its output."""
        reply = await self.action("Command", Command=cli)
        if reply.get("Response") != "Success":
            raise AmiError(f"command {cli!r} failed: {reply}")
        return reply.get("Output", "")

    # --- events -----------------------------------------------------------------------

    def mark(self) -> int:
        """Position in ``events``; pass it as ``since`` to only consider later events."""
        return len(self.events)

    def find(self, predicate: Predicate, since: int = 0) -> Message | None:
        for event in self.events[since:]:
            if predicate(event):
                return event
        return None

    async def wait_for(
        self, predicate: Predicate, timeout_s: float = 15.0, since: int = 0
    ) -> Message:
        """The first event (already received or arriving) that matches ``predicate``."""
        found: list[Message] = []

        def check() -> bool:
            if self._closed_error is not None:
                return True
            event = self.find(predicate, since)
            if event is not None:
                found.append(event)
                return True
            return False

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(check), timeout_s)
            except TimeoutError:
                raise AmiTimeout(
                    f"no matching AMI event within {timeout_s} s; last events:\n"
                    + self.describe(self.events[-15:])
                ) from None
        if not found:
            raise AmiError(f"AMI connection lost: {self._closed_error!r}")
        return found[0]

    async def wait_for_event(
        self, event: str, timeout_s: float = 15.0, since: int = 0, **fields: str
    ) -> Message:
        """Shorthand: ``wait_for_event("UserEvent", UserEvent="IvrRouted", Intent="billing")``."""
        return await self.wait_for(
            lambda e: event_matches(e, Event=event, **fields), timeout_s=timeout_s, since=since
        )

    def agi_execs(self, caller_id: str | None = None, channel: str | None = None) -> list[AgiExec]:
        """AGI commands in the order sent, from AGIExecStart/AGIExecEnd events."""
        starts: list[Message] = []
        ends: dict[str, Message] = {}
        for event in self.events:
            if caller_id is not None and event.get("CallerIDNum") != caller_id:
                continue
            if channel is not None and event.get("Channel") != channel:
                continue
            if event.get("Event") == "AGIExecStart":
                starts.append(event)
            elif event.get("Event") == "AGIExecEnd":
                ends[event.get("CommandId", "")] = event
        result = []
        for start in starts:
            end = ends.get(start.get("CommandId", ""))
            result.append(
                AgiExec(
                    command=start.get("Command", ""),
                    command_id=start.get("CommandId", ""),
                    result_code=None if end is None else end.get("ResultCode"),
                    result=None if end is None else end.get("Result"),
                )
            )
        return result

    def agi_commands(self, caller_id: str | None = None, channel: str | None = None) -> list[str]:
        """Just the command lines of ``agi_execs``."""
        return [e.command for e in self.agi_execs(caller_id, channel)]

    @staticmethod
    def describe(events: list[Message]) -> str:
        keys = (
            "Event",
            "UserEvent",
            "Channel",
            "CallerIDNum",
            "Variable",
            "Value",
            "Command",
            "Result",
            "Cause",
        )
        return "\n".join("  " + " ".join(f"{k}={e[k]!r}" for k in keys if k in e) for e in events)

    # --- reader -----------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._reader is not None
        lines: list[str] = []
        try:
            while True:
                raw = await self._reader.readline()
                if not raw:
                    raise AmiError("AMI connection closed by Asterisk")
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line:
                    lines.append(line)
                    continue
                if lines:
                    await self._dispatch(_parse(lines))
                    lines = []
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._closed_error = exc
            for future in self._responses.values():
                if not future.done():
                    future.set_exception(AmiError(f"AMI connection lost: {exc!r}"))
            async with self._changed:
                self._changed.notify_all()

    async def _dispatch(self, message: Message) -> None:
        if "Response" in message and "Event" not in message:
            future = self._responses.get(message.get("ActionID", ""))
            if future is not None and not future.done():
                future.set_result(message)
            return
        async with self._changed:
            self.events.append(message)
            self._changed.notify_all()


def _parse(lines: list[str]) -> Message:
    message: Message = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        value = value[1:] if value.startswith(" ") else value
        # Repeated keys (e.g. several Output: lines of a Command response) are joined.
        message[key] = f"{message[key]}\n{value}" if key in message else value
    return message
