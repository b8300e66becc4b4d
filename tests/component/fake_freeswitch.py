"""A fake FreeSWITCH for component tests, speaking the Event Socket as mod_event_socket does.

Written from FreeSWITCH's documentation, with its own parsing and serialising (none of the
engine's ESL code), so a misunderstanding in the engine is not mirrored here.

* ``dial_outbound(port, call)``: the ``socket`` application in ``async`` mode, with ``full``
  only if ``FsCall.full`` (the sample dialplan does not set it). It dials the engine and
  answers: ``connect`` → a ``command/reply`` whose headers are the channel data, URL-encoded
  (``Reply-Text: %2BOK%0A``, ``Socket-Mode: async``, ``Control: single-channel`` or ``full``,
  ``Unique-ID``, ``Caller-Caller-ID-Number``, ``variable_*``); ``myevents`` → ``+OK Events
  Enabled``; ``resume`` → ``+OK`` and, as mod_event_socket does, the channel variable
  ``socket_resume=true``; ``sendmsg`` (below). Those are served before mod_event_socket's
  outbound gate; on a socket without ``full`` every other command (``linger``, ``api``,
  ``bgapi``, ``sendevent``, ``event``, ``log``, ...) gets ``-ERR command not found``
  (recorded in ``FsCall.refused``); with ``full``, ``linger N`` → ``+OK will linger N
  seconds``. ``FsCall.dialplan_continues``: the engine closed the socket and
  ``socket_resume`` is true (set by ``resume`` or by the dialplan before ``socket``), the
  only case in which FreeSWITCH hands the channel back to the dialplan after ``socket``
  (``LFLAG_RESUME`` or ``socket_resume`` in ``listener_run``/``socket_function``).
  ``sendmsg`` with ``call-command: execute`` → ``+OK``, then ``CHANNEL_EXECUTE``, the
  caller's ``DTMF`` events and ``CHANNEL_EXECUTE_COMPLETE`` carrying ``Application-UUID``
  (the ``Event-UUID`` sent), ``Application``, ``Application-Data``, ``Application-Response``
  and the channel variables (``variable_IVR_READ``, ``variable_read_result``); ``set``,
  ``multiset`` and ``unset`` change the channel's variables. A scripted hang-up during a
  ``read`` sends what FreeSWITCH sends then: ``CHANNEL_HANGUP``,
  the completion with ``Answer-State: hangup``; without ``linger`` (``read_packet`` stops when
  the channel is down) a ``text/disconnect-notice`` (``Content-Disposition: disconnect``,
  the goodbye text) and the switch closes the socket (``FsCall.switch_closed``; the fake
  then reads on, answering nothing, until the engine closes: ``FsCall.unanswered``); after
  ``linger``, ``CHANNEL_HANGUP_COMPLETE`` and a notice with ``Content-Disposition: linger``
  and ``Linger-Time``, the socket left open and later ``sendmsg`` answered ``+OK`` but not
  run. A scripted malformed frame replaces the answer to the n-th ``read``.
  ``hangup_after_connect``: the caller hangs up as soon as the session is set up (after the
  handshake's last command, ``resume``; events and notice as above, no execute completion).
  ``held_read``: the n-th ``read`` plays on (``FsCall.playing`` set) until the test sets
  ``FsCall.release``; then it ends unkeyed (``read_result=timeout``). A ``sendmsg`` that
  comes meanwhile is answered ``+OK`` at once and its application queued behind the read
  (``async`` mode, ``event-lock``; ``FsCall.queued``), to run once the read has ended, in
  order, only if the engine still holds the socket: an application still queued when the
  engine closes is never run (the listener is gone; what FreeSWITCH does with such
  leftovers is not documented, so the fake takes the case that loses them).
  ``dead_at_read``: from the n-th ``read`` on the switch answers nothing (a hung peer)
  and keeps the socket open; what the engine sends is in ``FsCall.unanswered``.
* ``event_application(data, channel)``: the headers of the event mod_dptools' ``event``
  application fires: ``data`` split like ``switch_separate_string`` with a ``,`` (outside
  ``'...'``, backslash escapes; quotes and surrounding spaces removed), each ``name=value``
  added, ``Event-Name=`` and ``Event-Subclass=`` replacing the earlier one, then the
  channel's data (``switch_channel_event_set_data``). ``expand(data, variables)``: the
  dialplan's ``${name}`` substitution.
* ``FakeInbound``: the inbound socket: ``auth/request``, ``auth`` → ``+OK accepted`` or
  ``-ERR invalid`` + disconnect notice + close; ``event plain NAMES`` → ``+OK event listener
  enabled plain``, read as ``parse_command`` does: names are case-insensitive and, once
  ``CUSTOM`` is seen, every later word is a subclass (``HEARTBEAT`` after ``CUSTOM`` is a
  subclass, not the event). ``emit(headers)`` sends an event to every session subscribed to
  its name (``ALL``: everything), a ``CUSTOM`` event with an ``Event-Subclass`` only to
  sessions that also named that subclass.
  The fake keeps FreeSWITCH's channel table from what it emits (``CHANNEL_CREATE`` adds a
  row, ``CHANNEL_HANGUP``/``_COMPLETE`` set its ``callstate`` to ``HANGUP``,
  ``CHANNEL_DESTROY`` removes it), also while nobody listens, and answers ``api show channels
  as json`` with it: an ``api/response`` whose body is ``{"row_count":N,"rows":[...]}``
  (``{"row_count":0}`` when empty), every value a string; another ``api`` gets ``-ERR ...
  Command not found!``. ``before_api``: events sent to a session just before an ``api``
  reply (FreeSWITCH sends the events it queued first). ``down()`` drops every session and
  refuses new ones until ``up()``.

Every wait is bounded (``WAIT_S``): a broken engine fails the test, it never hangs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

WAIT_S = 10.0
DISCONNECT_TEXT = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
_seq = itertools.count(1000)


def encode_value(value: str) -> str:
    """As FreeSWITCH's ``switch_url_encode``: '/', ':', ',', '.', '-', '_' stay plain."""
    return quote(value, safe="/:,.-_~")


def serialize_event(headers: Mapping[str, str], body: str = "") -> bytes:
    """``switch_event_serialize`` with encoding on: URL-encoded lines, blank line, body."""
    text = "".join(f"{k}: {encode_value(v)}\n" for k, v in headers.items())
    if body:
        raw = body.encode()
        return (text + f"Content-Length: {len(raw)}\n\n").encode() + raw
    return (text + "\n").encode()


def event_frame(headers: Mapping[str, str], body: str = "") -> bytes:
    payload = serialize_event(headers, body)
    head = f"Content-Length: {len(payload)}\nContent-Type: text/event-plain\n\n"
    return head.encode() + payload


def reply_frame(text: str) -> bytes:
    return f"Content-Type: command/reply\nReply-Text: {text}\n\n".encode()


def disconnect_frame(uuid_: str, disposition: str) -> bytes:
    head = (
        "Content-Type: text/disconnect-notice\n"
        f"Controlled-Session-UUID: {uuid_}\n"
        f"Content-Disposition: {disposition}\n"
        f"Content-Length: {len(DISCONNECT_TEXT)}\n\n"
    )
    return head.encode() + DISCONNECT_TEXT


def linger_frame(uuid_: str, channel_name: str, seconds: int) -> bytes:
    """The notice ``read_packet`` sends when a lingering session's channel goes down."""
    return (
        "Content-Type: text/disconnect-notice\n"
        f"Controlled-Session-UUID: {uuid_}\n"
        "Content-Disposition: linger\n"
        f"Channel-Name: {channel_name}\n"
        f"Linger-Time: {seconds}\n"
        "Content-Length: 0\n\n"
    ).encode()


def parse_command(raw: bytes) -> tuple[str, dict[str, str]]:
    """A command as mod_event_socket reads it: first line, then ``name: value`` lines."""
    lines = raw.decode().strip("\n").split("\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return lines[0], headers


def switch_true(value: str | None) -> bool:
    """FreeSWITCH's ``switch_true``: yes/on/true/t/enabled/active/allow, or a non-zero number."""
    text = (value or "").strip().lower()
    truthy = text in ("yes", "on", "true", "t", "enabled", "active", "allow")
    return truthy or (text.lstrip("-").isdigit() and int(text) != 0)


def split_app_data(data: str, delim: str = ",") -> list[str]:
    """``switch_separate_string`` with a delimiter other than a space."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(data):
        c = data[i]
        if c == "\\" and i + 1 < len(data):
            current.append(data[i + 1])
            i += 2
            continue
        if c == "'" and (quoted or "'" in data[i + 1 :]):
            quoted = not quoted
        elif c == delim and not quoted:
            parts.append("".join(current).strip(" "))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current).strip(" "))
    return parts


def expand(data: str, variables: Mapping[str, str]) -> str:
    """``${name}`` → the channel variable (empty when unset), as the XML dialplan does."""
    return re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: variables.get(m.group(1), ""), data)


def event_application(data: str, channel: Mapping[str, str]) -> dict[str, str]:
    """The event mod_dptools' ``event`` application fires (a repeated header: the last)."""
    headers = {"Event-Name": "CHANNEL_APPLICATION"}
    for item in split_app_data(data):
        name, sep, value = item.partition("=")
        if sep:
            headers[name.strip()] = value.strip()
    headers.update(channel)
    return headers


def _now_us() -> str:
    return str(1_732_440_000_000_000 + next(_seq) * 1000)


@dataclass
class FsCall:
    """One caller on the fake switch: keys pressed per ``read`` ("" stays silent)."""

    caller_id: str
    keys: Sequence[str] = ()
    hangup_at_read: int | None = None
    hangup_after_connect: bool = False
    held_read: int | None = None
    dead_at_read: int | None = None
    playing: asyncio.Event = field(default_factory=asyncio.Event)  # the held read started
    release: asyncio.Event = field(default_factory=asyncio.Event)  # the test: end it now
    queued: list[str] = field(default_factory=list)  # applications sent during the read
    engine_acted: asyncio.Event = field(default_factory=asyncio.Event)  # queued or closed
    malformed_at_read: int | None = None
    malformed: bytes = b"Content-Type: text/event-plain\nContent-Length: 12x\n\n"
    full: bool = False  # the socket application's `full` keyword
    menu: str | None = None
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    heard: list[list[str]] = field(default_factory=list)  # prompt files per read
    variables: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    apps: list[tuple[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # commands answered -ERR
    unanswered: list[str] = field(default_factory=list)  # sent after the switch's goodbye
    server_closed: bool = False  # the engine closed the socket (EOF seen by the fake)
    switch_closed: bool = False  # the fake closed it (a hang-up without linger)
    hung_up: bool = False

    @property
    def dialplan_continues(self) -> bool:
        """FreeSWITCH goes on with the action after ``socket`` (the socket closed by the
        engine, with ``resume`` sent or ``socket_resume`` set); otherwise it does not."""
        return self.server_closed and switch_true(self.variables.get("socket_resume"))

    def channel_headers(self) -> dict[str, str]:
        name = f"sofia/external/{self.caller_id}@198.51.100.7"
        return {
            "Event-Name": "CHANNEL_DATA",
            "Core-UUID": "5f1c2da2-9958-44b2-ae1b-bce99d38f971",
            "Event-Date-Timestamp": _now_us(),
            "Channel-State": "CS_EXECUTE",
            "Channel-Call-State": "ACTIVE",
            "Channel-Name": name,
            "Unique-ID": self.uuid,
            "Call-Direction": "inbound",
            "Answer-State": "answered",
            "Caller-Caller-ID-Name": "Fake Caller",
            "Caller-Caller-ID-Number": self.caller_id,
            "Caller-Destination-Number": "2000",
            "Caller-Context": "public",
            "Caller-Unique-ID": self.uuid,
            "Caller-Channel-Name": name,
            "variable_uuid": self.uuid,
            "variable_current_application": "socket",
            "variable_current_application_data": "127.0.0.1:8084 async"
            + (" full" if self.full else ""),
            **{f"variable_{k}": v for k, v in self.variables.items()},
        }


class OutboundDial:
    """One outbound-socket session driven by an ``FsCall``."""

    def __init__(self, call: FsCall, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.call, self.reader, self.writer = call, reader, writer
        self.reads = 0
        self.linger_s: int | None = None  # set by `linger N` (full sockets only)
        self.dead = False  # ``dead_at_read`` reached: nothing is answered any more
        self.held: asyncio.Task[None] | None = None  # the held read and what follows it
        self.reading = False  # the held read is playing
        self.waiting: list[dict[str, str]] = []  # sendmsg queued behind the held read

    async def run(self) -> None:
        try:
            await self._commands()
        finally:
            self.call.engine_acted.set()
            if self.held is not None:  # the engine has closed: nothing queued runs any more
                self.held.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.held

    async def _commands(self) -> None:
        while True:
            try:
                raw = await self.reader.readuntil(b"\n\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                self.call.server_closed = True
                return
            line, headers = parse_command(raw)
            self.call.commands.append(line)
            if self.dead:
                self.call.unanswered.append(line)
                continue
            if self.reading and line.startswith("sendmsg"):
                await self._queue(headers)
                continue
            if not await self._answer(line, headers):
                if self.call.switch_closed:
                    await self._after_goodbye()
                return

    async def _after_goodbye(self) -> None:
        """FreeSWITCH has closed the socket. The fake only shuts its sending side, then reads
        (answering nothing) until the engine lets go, so a test knows the engine is done;
        what the engine still sent is in ``FsCall.unanswered``."""
        self.writer.write_eof()
        while True:
            try:
                raw = await self.reader.readuntil(b"\n\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                self.call.server_closed = True
                return
            self.call.unanswered.append(parse_command(raw)[0])

    async def _send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def _answer(self, line: str, headers: dict[str, str]) -> bool:
        call = self.call
        if line == "connect":
            data = {
                "Content-Type": "command/reply",
                "Reply-Text": "+OK\n",
                "Socket-Mode": "async",
                "Control": "full" if call.full else "single-channel",
            }
            data.update(call.channel_headers())
            payload = "".join(f"{k}: {encode_value(v)}\n" for k, v in data.items()) + "\n"
            await self._send(payload.encode())
        elif line == "myevents":
            await self._send(reply_frame("+OK Events Enabled"))
        elif line == "resume":
            call.variables["socket_resume"] = "true"
            await self._send(reply_frame("+OK"))
            if call.hangup_after_connect:
                return await self._hang_up(None)
        elif line.startswith("sendmsg") and call.hung_up:  # queued to a channel that is gone
            call.apps.append((headers.get("execute-app-name", ""), "(not run: hung up)"))
            await self._send(reply_frame("+OK"))
        elif line.startswith("sendmsg") and headers.get("call-command") == "execute":
            return await self._execute(headers)
        elif call.full and line.startswith("linger "):
            self.linger_s = int(line.split()[1])
            await self._send(reply_frame(f"+OK will linger {self.linger_s} seconds"))
        else:  # past the outbound gate without `full`, or unknown
            call.refused.append(line)
            await self._send(reply_frame("-ERR command not found"))
        return True

    def _event(self, name: str, **extra: str) -> bytes:
        headers = self.call.channel_headers()
        headers.update({"Event-Name": name, "Event-Date-Timestamp": _now_us(), **extra})
        return event_frame(headers)

    async def _queue(self, headers: dict[str, str]) -> None:
        """``sendmsg`` while the held read plays: ``+OK`` now, run after the read."""
        self.waiting.append(headers)
        app, arg = headers.get("execute-app-name", ""), headers.get("execute-app-arg", "")
        self.call.queued.append(f"{app} {arg}")
        await self._send(reply_frame("+OK"))
        self.call.engine_acted.set()

    async def _play_held(self, tag: dict[str, str]) -> None:
        """The held read until ``release``; then its end and the applications queued."""
        self.call.playing.set()
        await self.call.release.wait()
        self.reading = False
        self.call.variables.update({"IVR_READ": "", "read_result": "timeout"})
        done = {**tag, "Application-Response": "_none_"}
        await self._send(self._event("CHANNEL_EXECUTE_COMPLETE", **done))
        while self.waiting:
            await self._execute(self.waiting.pop(0), replied=True)

    async def _execute(self, headers: dict[str, str], *, replied: bool = False) -> bool:
        app = headers.get("execute-app-name", "")
        arg = headers.get("execute-app-arg", "")
        tag = {"Application": app, "Application-Data": arg}
        tag["Application-UUID"] = headers.get("Event-UUID", "")
        self.call.apps.append((app, arg))
        if not replied:
            await self._send(reply_frame("+OK"))
        await self._send(self._event("CHANNEL_EXECUTE", **tag))
        if app == "read":
            return await self._read(arg, tag)
        if app == "set":
            name, _, value = arg.partition("=")
            self.call.variables[name] = value
        elif app == "unset":
            self.call.variables.pop(arg, None)
        elif app == "multiset":
            for item in arg.split(" "):
                name, _, value = item.partition("=")
                self.call.variables[name] = value
        done = {**tag, "Application-Response": "_none_"}
        await self._send(self._event("CHANNEL_EXECUTE_COMPLETE", **done))
        return True

    async def _read(self, arg: str, tag: dict[str, str]) -> bool:
        call = self.call
        self.reads += 1
        parts = arg.split(" ")  # read <min> <max> <file> <var> <timeout> <terminators>
        files = parts[2].removeprefix("file_string://").split("!")
        call.heard.append([f.removesuffix(".wav") for f in files])
        if call.malformed_at_read == self.reads:
            await self._send(call.malformed)
            return True  # keep listening: the engine must give up on its own
        if call.hangup_at_read == self.reads:
            return await self._hang_up(tag)
        if call.dead_at_read == self.reads:
            self.dead = True
            call.playing.set()  # and never ends
            return True
        if call.held_read == self.reads:
            self.reading = True
            self.held = asyncio.create_task(self._play_held(tag))
            return True
        keys = call.keys[self.reads - 1] if self.reads <= len(call.keys) else ""
        for key in keys:
            await self._send(self._event("DTMF", **{"DTMF-Digit": key, "DTMF-Duration": "1600"}))
        call.variables[parts[3]] = keys
        call.variables["read_result"] = "success" if keys else "timeout"
        done = self._event("CHANNEL_EXECUTE_COMPLETE", **tag, **{"Application-Response": "_none_"})
        await self._send(done)
        return True

    async def _hang_up(self, tag: dict[str, str] | None) -> bool:
        """The caller hangs up (during the application ``tag`` names, if any); whether the
        socket stays open (``linger``)."""
        call = self.call
        call.hung_up = True
        call.variables["hangup_cause"] = "NORMAL_CLEARING"
        gone = {"Answer-State": "hangup", "Channel-Call-State": "HANGUP"}
        cause = {"Hangup-Cause": "NORMAL_CLEARING", **gone}
        await self._send(self._event("CHANNEL_HANGUP", **cause))
        if tag is not None:
            call.variables["read_result"] = "failure"
            await self._send(self._event("CHANNEL_EXECUTE_COMPLETE", **tag, **gone))
        if self.linger_s is None:  # listener_run: the rest of the queue flushed, goodbye, close
            await self._send(disconnect_frame(call.uuid, "disconnect"))
            call.switch_closed = True
            return False
        await self._send(self._event("CHANNEL_HANGUP_COMPLETE", **cause))
        name = call.channel_headers()["Channel-Name"]
        await self._send(linger_frame(call.uuid, name, self.linger_s))
        return True


async def dial_outbound(port: int, call: FsCall, host: str = "127.0.0.1") -> FsCall:
    """Dial the engine's outbound-socket server and play ``call`` to the end."""
    if call.menu is not None:
        call.variables["IVR_MENU"] = call.menu
    async with asyncio.timeout(WAIT_S):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            await OutboundDial(call, reader, writer).run()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return call


# ---------------------------------------------------------------------------- inbound


def api_frame(body: str) -> bytes:
    raw = body.encode()
    return f"Content-Type: api/response\nContent-Length: {len(raw)}\n\n".encode() + raw


def channel_row(headers: Mapping[str, str]) -> dict[str, str]:
    """A ``channels`` row as ``show channels`` lists it, from a ``CHANNEL_CREATE``."""
    uid = headers.get("Unique-ID", "")
    stamp = headers.get("Event-Date-Timestamp", "0")
    outbound = headers.get("Call-Direction") == "outbound"
    row = {
        "uuid": uid,
        "direction": headers.get("Call-Direction", ""),
        "created": "2024-11-24 09:20:00",
        "created_epoch": str(int(stamp) // 1_000_000),
        "name": headers.get("Channel-Name", ""),
        "state": "CS_EXECUTE",
        "cid_name": headers.get("Caller-Caller-ID-Name", ""),
        "cid_num": headers.get("Caller-Caller-ID-Number", ""),
        "ip_addr": "198.51.100.7",
        "dest": headers.get("Caller-Destination-Number", ""),
        "application": "",
        "application_data": "",
        "dialplan": "XML",
        "context": headers.get("Caller-Context", ""),
        "hostname": "fs1",
        "callstate": "RINGING",
        "call_uuid": headers.get("Channel-Call-UUID", "") if outbound else "",
    }
    for key in ("cid_name", "cid_num", "dest", "context"):
        row[f"initial_{key}"] = row[key]
    return row


@dataclass
class InboundSession:
    writer: asyncio.StreamWriter
    subscribed: set[str] = field(default_factory=set)
    subclasses: set[str] = field(default_factory=set)  # of CUSTOM
    commands: list[str] = field(default_factory=list)

    def subscribe(self, words: list[str]) -> None:
        """mod_event_socket's ``event`` command: after ``CUSTOM`` every word is a subclass."""
        custom = False
        for word in words:
            if custom:
                self.subclasses.add(word)
            else:
                self.subscribed.add(word.upper())
                custom = word.upper() == "CUSTOM"

    def wants(self, headers: Mapping[str, str]) -> bool:
        name = headers.get("Event-Name", "").upper()
        if "ALL" in self.subscribed:
            return True
        if name != "CUSTOM" or "Event-Subclass" not in headers:
            return name in self.subscribed
        return name in self.subscribed and headers["Event-Subclass"] in self.subclasses


class FakeInbound:
    """FreeSWITCH's inbound socket (``event_socket.conf.xml``: listen-port, password)."""

    def __init__(self, password: str = "ClueCon", port: int = 0) -> None:
        self.password = password
        self.port = port
        self.sessions: list[InboundSession] = []
        self.subscribed = asyncio.Condition()
        self.channels: dict[str, dict[str, str]] = {}
        self.before_api: list[Mapping[str, str]] = []
        self.listings = 0  # api show channels answered
        self.refusing = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in self.sessions:
            session.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._session(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        session = InboundSession(writer)
        async with self.subscribed:
            self.sessions.append(session)
            self.subscribed.notify_all()
        writer.write(b"Content-Type: auth/request\n\n")
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                line, _ = parse_command(await reader.readuntil(b"\n\n"))
                session.commands.append(line)
                if not await self._answer(session, line):
                    break
        writer.transport.abort()

    async def _answer(self, session: InboundSession, line: str) -> bool:
        writer = session.writer
        if line.startswith("auth "):
            if line.removeprefix("auth ") != self.password:
                writer.write(reply_frame("-ERR invalid"))
                writer.write(disconnect_frame("", "disconnect"))
                await writer.drain()
                return False
            writer.write(reply_frame("+OK accepted"))
        elif line.startswith("event plain "):
            session.subscribe(line.removeprefix("event plain ").split())
            writer.write(reply_frame("+OK event listener enabled plain"))
            async with self.subscribed:
                self.subscribed.notify_all()
        elif line.startswith("api "):
            for headers in self.before_api:
                writer.write(event_frame(headers))
            writer.write(api_frame(self._api(line.removeprefix("api "))))
            async with self.subscribed:
                self.subscribed.notify_all()
        else:
            writer.write(reply_frame("-ERR command not found"))
        await writer.drain()
        return True

    def _api(self, command: str) -> str:
        if command != "show channels as json":
            return f"-ERR {command.split(' ')[0]} Command not found!\n"
        self.listings += 1
        rows = list(self.channels.values())
        doc: dict[str, object] = {"row_count": len(rows)}
        if rows:
            doc["rows"] = rows
        return json.dumps(doc, separators=(",", ":")) + "\n"

    def _track(self, headers: Mapping[str, str]) -> None:
        name, uid = headers.get("Event-Name", ""), headers.get("Unique-ID", "")
        if name == "CHANNEL_CREATE" and uid:
            self.channels[uid] = channel_row(headers)
        elif name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE") and uid in self.channels:
            self.channels[uid]["callstate"] = "HANGUP"
        elif name == "CHANNEL_DESTROY":
            self.channels.pop(uid, None)

    async def wait_subscribed(self, count: int = 1) -> None:
        async with asyncio.timeout(WAIT_S), self.subscribed:
            await self.subscribed.wait_for(
                lambda: sum(1 for s in self.sessions if s.subscribed) >= count
            )

    async def wait_listed(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S), self.subscribed:
            await self.subscribed.wait_for(lambda: self.listings >= count)

    async def wait_sessions(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S), self.subscribed:
            await self.subscribed.wait_for(lambda: len(self.sessions) >= count)

    async def emit(self, headers: Mapping[str, str], raw: bytes | None = None) -> None:
        """Send an event (or ``raw`` bytes) to every session subscribed to its name."""
        self._track(headers)
        for session in self.sessions:
            if session.wants(headers) and not session.writer.is_closing():
                session.writer.write(raw if raw is not None else event_frame(headers))
                await session.writer.drain()

    def drop_all(self) -> None:
        """The switch restarts: every connection is reset."""
        for session in self.sessions:
            session.subscribed.clear()
            session.subclasses.clear()
            session.writer.transport.abort()

    def down(self) -> None:
        """The bridge loses the switch: sessions reset, new ones refused until ``up()``."""
        self.refusing = True
        self.drop_all()

    def up(self) -> None:
        self.refusing = False
