"""A fake Asterisk 22 for component tests: dials a FastAGI server over a real TCP socket.

It sends the ``agi_*`` header block Asterisk 22 sends, then answers each command line with
the next scripted reply (recording every command it received). A scripted reply is raw
bytes (may hold several lines: ``100 Trying``, ``HANGUP``, a ``520-`` block, ...), ``b""``
to stay silent, or ``DROP`` to close the connection instead of answering; or, instead of a
script, an ``AsteriskChannel`` answers each command from the channel's variables as Asterisk
does (``GET VARIABLE`` cut at 1023 bytes, ``GET FULL VARIABLE``, ``Read``). Everything runs
under a deadline so a misbehaving server fails the test instead of hanging it.

Like res_agi.c before 2025, it reads a command line in pieces of at most ``AGI_READ_BYTES``
(``fgets`` into ``char buf[2048]``; 8192 since asterisk/asterisk#1318): the first piece takes
the scripted reply, every further piece of an over-long line is a command of its own,
answered ``510`` (the session is out of step).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ivr_engine.telephony.agi import split_command_args
from ivr_engine.telephony.agi.channel import read_mset_options

DROP = None  # a scripted "reply" that closes the connection (the caller's line goes dead)
Reply = bytes | None
Answerer = Callable[[str], Reply]  # a command line -> its reply

DEAD_CHANNEL = b"511 Command Not Permitted on a dead channel or intercepted channel\n"
INVALID_COMMAND = b"510 Invalid or unknown command\n"
USAGE_ERROR = (
    b"520-Invalid command syntax.  Proper usage follows:\n"
    b" Usage: GET DATA <file to be streamed> [timeout] [maxdigits]\n"
    b"        Stream the given file, and receive DTMF data.\n"
    b"520 End of proper usage.\n"
)

AGI_READ_BYTES = 2047  # res_agi.c AGI_BUF_LEN (2048) less fgets' terminating NUL

_uniqueids = itertools.count(1)


def asterisk_reads(line: bytes) -> list[str]:
    """The commands res_agi makes of one line: pieces of ``AGI_READ_BYTES``, newline cut."""
    pieces = [line[i : i + AGI_READ_BYTES] for i in range(0, len(line), AGI_READ_BYTES)]
    return [piece.decode(errors="replace").rstrip("\n") for piece in pieces]


def asterisk_env(
    host: str,
    port: int,
    script: str = "ivr?menu=main",
    *,
    caller_id: str = "+15551230001",
    args: Sequence[str] = (),
) -> dict[str, str]:
    """The header block Asterisk 22 sends for ``AGI(agi://host:port/<script>,args...)``."""
    n = next(_uniqueids)
    env = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://{host}:{port}/{script}",
        "agi_channel": f"PJSIP/sipp-caller-{n:08x}",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": f"1732440000.{n}",
        "agi_version": "22.1.0",
        "agi_callerid": caller_id,
        "agi_calleridname": "SIPp Caller",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": "2000",
        "agi_rdnis": "unknown",
        "agi_context": "ivr-entry",
        "agi_extension": "2000",
        "agi_priority": "2",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "139872342345280",
    }
    env.update({f"agi_arg_{i}": arg for i, arg in enumerate(args, start=1)})
    return env


def _scripted(replies: list[Reply]) -> Answerer:
    """The next scripted reply for each command; ``DROP`` once they run out."""
    return lambda command: replies.pop(0) if replies else DROP


def header_block(env: Mapping[str, str]) -> bytes:
    return "".join(f"{key}: {value}\n" for key, value in env.items()).encode() + b"\n"


@dataclass
class Transcript:
    commands: list[str] = field(default_factory=list)
    dropped: bool = False  # the fake closed the connection (DROP or unscripted command)
    server_closed: bool = False  # the server closed the connection (EOF seen by the fake)


class FakeAsterisk:
    def __init__(self, host: str, port: int, *, deadline: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.deadline = deadline

    def env(
        self,
        script: str = "ivr?menu=main",
        *,
        caller_id: str = "+15551230001",
        args: Sequence[str] = (),
    ) -> dict[str, str]:
        return asterisk_env(self.host, self.port, script, caller_id=caller_id, args=args)

    async def call(
        self, replies: Sequence[Reply] | Answerer, *, env: Mapping[str, str] | None = None
    ) -> Transcript:
        """One call: headers, then one scripted reply per command (or what ``replies`` answers
        to each command, e.g. an ``AsteriskChannel``), until either side hangs up."""
        async with asyncio.timeout(self.deadline):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(header_block(env if env is not None else self.env()))
                await writer.drain()
                script = replies if callable(replies) else _scripted(list(replies))
                return await self._converse(reader, writer, script)
            finally:
                writer.close()

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: Answerer
    ) -> Transcript:
        transcript = Transcript()
        try:
            while line := await reader.readline():
                first, *rest = asterisk_reads(line)
                transcript.commands.append(first)
                reply = answer(first)
                if reply is DROP:
                    transcript.dropped = True
                    return transcript
                for piece in rest:  # what Asterisk does with the rest of an over-long line
                    transcript.commands.append(piece)
                    reply += INVALID_COMMAND
                writer.write(reply)
                await writer.drain()
        except ConnectionError:  # the server closed with our bytes unread: a reset
            pass
        transcript.server_closed = True
        return transcript

    async def exchange(self, data: bytes) -> bytes:
        """Send ``data`` as the whole client stream, half-close, return all the server sent."""
        async with asyncio.timeout(self.deadline):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(data)
                await writer.drain()
                writer.write_eof()
            except ConnectionError:  # the server already dropped us
                pass
            try:
                return await read_until_closed(reader)
            finally:
                writer.close()

    async def hold(self, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Send ``data`` and keep the connection open (a client that never finishes)."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        return reader, writer


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (a reset counts as closing)."""
    received = bytearray()
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            received += chunk
    return bytes(received)


@dataclass
class AsteriskChannel:
    """Answers commands from a channel's state, as Asterisk 22 does (for scripted-free tests):

    * ``GET VARIABLE name``: ``200 result=1 (value)``, the value cut at 1023 bytes (res_agi.c
      ``handle_getvariable`` reads it into ``char tempstr[1024]``); unset: ``200 result=0``.
    * ``GET FULL VARIABLE "expr"``: ``200 result=1 (expanded)``, never cut; ``${NAME}``
      expands to the value (unset: empty), ``${SET(NAME=value)}`` sets NAME and expands to
      the value (func_logic's ``SET``), evaluated left to right; ``knows_set=False`` is an
      Asterisk without func_logic: the function expands to nothing and sets nothing.
    * ``SET VARIABLE name value``: ``200 result=1``; ``EXEC MSet a=1,b=2``: ``200 result=0``.
    * ``EXEC Read "VAR,prompts,max,..."``: the next entry of ``keys`` (cut to max) goes into
      VAR, ``READSTATUS`` is ``OK`` or ``TIMEOUT``; ``200 result=0``; a prompt in ``missing``
      is skipped.
    * ``GET DATA prompt timeout max``: the next entry of ``keys`` in the reply (``200
      result=12``, none: ``200 result= (timeout)``); a prompt in ``missing``: ``200
      result=-1``, nothing read. ``EXEC Playback "a&b"``: heard; ``CHANNEL STATUS``: up (6).
    * ``RECORD FILE path wav ...``: the next entry of ``utterances``: bytes (a WAV file) are
      written to ``path.wav`` as Asterisk's recording, ``200 result=0 (timeout) endpos=N``;
      a one-character str is a key pressed while recorded (``(dtmf)``), a longer one the
      reason of a failure (``200 result=-1 (writefile)``); none left: an empty recording.
    * anything else: ``200 result=0``.

    ``set_log``: every (variable, value) set, in order: what AMI ``VarSet`` events show.
    """

    variables: dict[str, str] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    heard: list[list[str]] = field(default_factory=list)
    knows_set: bool = True
    missing: frozenset[str] = frozenset()
    set_log: list[tuple[str, str]] = field(default_factory=list)
    utterances: list[bytes | str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)  # the paths RECORD FILE was given

    def set(self, name: str, value: str) -> None:
        self.variables[name] = value
        self.set_log.append((name, value))

    def __call__(self, command: str) -> bytes:
        args = split_command_args(command)
        verb = " ".join(args[:3]).upper()
        if verb == "GET FULL VARIABLE":
            return f"200 result=1 ({self.expand(args[3])})\n".encode()
        if verb.startswith("GET VARIABLE"):
            value = self.variables.get(args[2])
            if value is None:
                return b"200 result=0\n"
            return b"200 result=1 (" + value.encode()[:1023] + b")\n"
        if verb.startswith("SET VARIABLE"):
            self.set(args[2], args[3])
            return b"200 result=1\n"
        if verb.startswith("GET DATA"):
            return self._get_data(args[2], int(args[4]))
        if verb.startswith("CHANNEL STATUS"):
            return b"200 result=6\n"
        if verb.startswith("RECORD FILE"):
            return self._record(args[2])
        if args[0].upper() == "EXEC" and args[1].upper() == "MSET":
            for name, value in read_mset_options(args[2]).items():
                self.set(name, value)
        elif args[0].upper() == "EXEC" and args[1].upper() == "READ":
            self._read(args[2])
        elif args[0].upper() == "EXEC" and args[1].upper() == "PLAYBACK":
            self.heard.append([p for p in args[2].split("&") if p not in self.missing])
        return b"200 result=0\n"

    def _read(self, options: str) -> None:
        variable, prompts, max_digits = options.split(",")[:3]
        self.heard.append([p for p in prompts.split("&") if p not in self.missing])
        pressed = (self.keys.pop(0) if self.keys else "")[: int(max_digits or 255)]
        self.set(variable, pressed)
        self.set("READSTATUS", "OK" if pressed else "TIMEOUT")

    def _record(self, path: str) -> bytes:
        self.recorded.append(path)
        said = self.utterances.pop(0) if self.utterances else b""
        if isinstance(said, str) and len(said) > 1:  # a failure: "writefile", "randomerror"
            return f"200 result=-1 ({said})\n".encode()
        if isinstance(said, str):
            return f"200 result={ord(said)} (dtmf) endpos=800\n".encode()
        if said:
            Path(f"{path}.wav").write_bytes(said)
        return f"200 result=0 (timeout) endpos={max(len(said) - 44, 0) // 2}\n".encode()

    def _get_data(self, prompt: str, max_digits: int) -> bytes:
        if prompt in self.missing:
            return b"200 result=-1\n"
        self.heard.append([prompt])
        pressed = (self.keys.pop(0) if self.keys else "")[:max_digits]
        return f"200 result={pressed}{'' if pressed else ' (timeout)'}\n".encode()

    def expand(self, expression: str) -> str:
        return _SUBSTITUTION.sub(self._substitute, expression)

    def _substitute(self, match: re.Match[str]) -> str:
        inner = match[1]
        function = _SET_FUNCTION.fullmatch(inner)
        if function is None:
            return self.variables.get(inner, "")
        if not self.knows_set:
            return ""
        self.set(function[1], function[2])
        return function[2]


_SUBSTITUTION = re.compile(r"\$\{([^{}]*)\}")
_SET_FUNCTION = re.compile(r"SET\(([A-Za-z0-9_]+)=([^)]*)\)")
