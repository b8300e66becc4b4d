"""``AgiChannel``: typed AGI commands over one asyncio stream pair, one command at a time.

Every exchange runs under ``asyncio.timeout(command_timeout)``. The reply reader skips
``100 Trying`` lines, consumes whole ``520-`` usage blocks (so the next command stays in
step), and notes an unsolicited ``HANGUP`` line: the reply to the command in flight is still
read, then ``CallerHungUp`` is raised, and every later command raises it without writing.
A command whose reply was not read completely (timeout, cancellation, oversized line) leaves
the connection out of step: later commands raise ``ChannelError`` without writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ivr_engine.domain.errors import CallerHungUp, ChannelError, RecordingFailed
from ivr_engine.telephony.agi.protocol import (
    MAX_LINE_CHARS,
    AgiProtocolError,
    AgiReply,
    check_command,
    command_line,
    format_command,
    multiline_code,
    parse_reply,
    reply_error,
)

log = logging.getLogger(__name__)

DEFAULT_COMMAND_TIMEOUT = 120.0
MAX_LINE_BYTES = MAX_LINE_CHARS
MAX_BLOCK_LINES = 256  # lines in one multi-line (520-) reply
_DTMF = re.compile(r"[0-9*#A-Da-d]*")
#: Keys that end a recording and count as the caller's choice (``#`` is not a menu key).
RECORD_ESCAPE_DIGITS = "0123456789*"
_RECORD_PATH = re.compile(r"/[A-Za-z0-9_./-]{1,250}")
_PROMPT_ID = re.compile(r"[^,&|\s\"]+")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What MSet's argument parser (main/app.c __ast_app_separate_args, backslashes and quotes
# removed) would read as syntax in a value: a "," ends the pair, quotes and backslashes are
# dropped, an unbalanced "(" or "[" swallows the commas after it. Each is backslash-escaped.
_MSET_SYNTAX = re.compile(r'[\\",()\[\]]')
_MSET_ARGS = 24  # main/pbx_variables.c: AST_APP_ARG(pair)[24] (99 in later releases)
# The last of those arguments is the rest of the string, its escapes NOT removed: 23 pairs.
MSET_MAX_PAIRS = _MSET_ARGS - 1
READ_VARIABLE = "IVR_READ"
EXEC = "EXEC"
READ_STATUSES = frozenset({"OK", "TIMEOUT", "INTERRUPTED", "SKIPPED", "ERROR"})
_READ_OUTCOME = f"${{{READ_VARIABLE}}}|${{READSTATUS}}"  # "1234|OK"


def mset_options(values: Mapping[str, str]) -> str:
    """``MSet``'s argument for ``values``: ``A=1,B=PJSIP/agent-1,C=a\\,b``. The app splits it
    at unescaped commas (removing backslashes and quotes, counting parentheses and brackets),
    then each pair at its first ``=``, the value taken as it is left: so a value's own
    ``\\ " , ( ) [ ]`` are backslash-escaped and everything else (``/``, ``|``, ``'``,
    ``=``, spaces, ``${...}``: EXEC does not substitute) passes unchanged."""
    bad = [name for name in values if not _VARIABLE_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"not a channel variable name: {bad[0]!r}")
    if len(values) > MSET_MAX_PAIRS:  # a 24th pair would be read with its escapes in it
        raise ValueError(f"MSet sets at most {MSET_MAX_PAIRS} variables, not {len(values)}")
    return ",".join(f"{name}={_MSET_SYNTAX.sub(_escaped, v)}" for name, v in values.items())


def _escaped(match: re.Match[str]) -> str:
    return "\\" + match[0]


def read_mset_options(options: str) -> dict[str, str]:
    """What ``MSet(options)`` sets, read as Asterisk reads it (``pbx_builtin_setvar_multiple``:
    the pairs split at ``,``, each pair at its first ``=``, a pair without one ignored): for
    the simulated and fake switches, and to check ``mset_options`` against."""
    found: dict[str, str] = {}
    for pair in _separate_args(options, ",", _MSET_ARGS):
        name_value = _separate_args(pair, "=", 2)
        if len(name_value) == 2:
            found[name_value[0]] = name_value[1]
    return found


def _separate_args(text: str, delim: str, most: int) -> list[str]:
    """main/app.c ``__ast_app_separate_args`` with ``remove_chars``: split at ``delim`` outside
    quotes, parentheses and brackets; quotes and backslashes removed (a backslash keeps the
    next character as it is); the last of ``most`` arguments is the rest, untouched."""
    args: list[str] = []
    i, paren, bracket, quote, ended_by_delim = 0, 0, 0, False, False
    while i < len(text) and len(args) < most - 1:
        current: list[str] = []
        ended_by_delim = False
        while i < len(text):
            char = text[i]
            i += 1
            if char == '"' and delim != '"':
                quote = not quote
                continue
            if char == "\\":
                current.append(text[i : i + 1])
                i += 1
                continue
            if char == delim and not (paren or bracket or quote):
                ended_by_delim = True
                break
            paren += {"(": 1, ")": -1 if paren else 0}.get(char, 0)
            bracket += {"[": 1, "]": -1 if bracket else 0}.get(char, 0)
            current.append(char)
        args.append("".join(current))
    if i < len(text) or ended_by_delim:
        args.append(text[i:])
    return args


@dataclass(frozen=True, slots=True)
class GetDataResult:
    """What ``GET DATA`` collected: the digits, and whether input ended by timeout."""

    digits: str
    timed_out: bool


def _digit(reply: AgiReply) -> str | None:
    """STREAM FILE / WAIT FOR DIGIT result: ASCII code of the key, 0 = none, -1 = hung up."""
    code = reply.result_int()
    if code == -1:
        raise CallerHungUp(f"caller hung up: {reply.line}")
    if code == 0:
        return None
    if not 32 < code < 127 or not _DTMF.fullmatch(chr(code)):
        raise AgiProtocolError(f"result is not a DTMF key: {reply.line!r}")
    return chr(code)


def read_options(prompts: Sequence[str], timeout_ms: int, max_digits: int) -> str:
    """``Read``'s options: ``IVR_READ,a&b,<max>,,1,<seconds>`` (one attempt, ``#`` ends)."""
    if not prompts:
        raise ValueError("read_digits needs at least one prompt")
    if not 1 <= max_digits <= 255:
        raise ValueError(f"max_digits must be 1..255, not {max_digits}")
    bad = [p for p in prompts if not _PROMPT_ID.fullmatch(p)]
    if bad:
        raise ValueError(f"prompt names may not contain ',', '&', '|' or spaces: {bad!r}")
    seconds = f"{max(timeout_ms, 1) / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{READ_VARIABLE},{'&'.join(prompts)},{max_digits},,1,{seconds}"


def read_command_line(prompts: Sequence[str], timeout_ms: int, max_digits: int) -> str:
    """The ``EXEC Read`` line ``read_digits`` sends, not checked for length: start-up checks
    measure it (``command_bytes``) against ``MAX_COMMAND_BYTES``."""
    return command_line(EXEC, "Read", read_options(prompts, timeout_ms, max_digits))


class AgiChannel:
    """One call's AGI session. Not reusable after ``CallerHungUp`` or a broken exchange."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = command_timeout
        self._max_line = max_line_bytes
        self._lock = asyncio.Lock()
        self._hung_up = False
        self._broken: str | None = None  # why the connection is out of step, if it is
        self._commands_sent = 0
        self._outcome_kept = False

    @property
    def hung_up(self) -> bool:
        return self._hung_up

    @property
    def outcome_kept(self) -> bool:
        """``keep_outcome`` was called: nothing may tell the switch this call failed."""
        return self._outcome_kept

    def keep_outcome(self) -> None:
        self._outcome_kept = True

    @property
    def commands_sent(self) -> int:
        return self._commands_sent

    def note_hangup(self) -> None:
        """Record a hangup learnt out of band (classic AGI's SIGHUP)."""
        self._hung_up = True

    # ------------------------------------------------------------------ low level

    async def send(self, command: str) -> AgiReply:
        """Send one command line; return its ``200`` reply or raise what its status means."""
        check_command(command)
        async with self._lock:
            reply = await self._exchange(command)
        error = reply_error(reply)
        if error is not None:
            raise error
        return reply

    async def _exchange(self, command: str) -> AgiReply:
        if self._hung_up:
            raise CallerHungUp(f"caller already hung up; not sending {command[:40]!r}")
        if self._broken is not None:
            raise ChannelError(f"AGI connection out of step: {self._broken}")
        shown = command[:40]
        self._broken = f"no complete reply to {shown!r}"
        try:
            async with asyncio.timeout(self._timeout):
                await self._write(command)
                reply = await self._read_reply()
        except TimeoutError:
            raise ChannelError(f"no AGI reply within {self._timeout}s to {shown!r}") from None
        self._broken = None
        if self._hung_up:
            raise CallerHungUp(f"caller hung up during {shown!r} ({reply.line})")
        return reply

    async def _write(self, command: str) -> None:
        self._commands_sent += 1
        try:
            self._writer.write(command.encode("utf-8") + b"\n")
            await self._writer.drain()
        except ConnectionError as exc:
            raise CallerHungUp(f"AGI connection lost while writing: {exc!r}") from None

    async def _read_line(self) -> str:
        try:
            raw = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise CallerHungUp("AGI connection closed by the peer") from None
        except asyncio.LimitOverrunError:
            raise AgiProtocolError("AGI line exceeds the stream limit") from None
        except ConnectionError as exc:
            raise CallerHungUp(f"AGI connection lost while reading: {exc!r}") from None
        raw = raw.rstrip(b"\r\n")
        if len(raw) > self._max_line:
            raise AgiProtocolError(f"AGI line longer than {self._max_line} bytes")
        return raw.decode("utf-8", "replace")

    async def _read_reply(self) -> AgiReply:
        while True:
            line = await self._read_line()
            if line == "HANGUP":
                self._hung_up = True
                continue
            code = multiline_code(line)
            if code is not None:
                return await self._read_block(code, line)
            reply = parse_reply(line)
            if reply.code != 100:
                return reply

    async def _read_block(self, code: int, first: str) -> AgiReply:
        """The lines after ``NNN-...`` up to ``NNN ...``; their text becomes ``data``."""
        lines: list[str] = []
        while True:
            line = await self._read_line()
            if line.startswith(f"{code} ") or line == str(code):
                return AgiReply(code=code, data="\n".join(lines), line=first)
            if line == "HANGUP":
                self._hung_up = True
                continue
            if len(lines) >= MAX_BLOCK_LINES:
                raise AgiProtocolError(f"{code}- block longer than {MAX_BLOCK_LINES} lines")
            lines.append(line)

    # ------------------------------------------------------------------ commands

    async def _result(self, verb: str, *args: str | int) -> AgiReply:
        """Send; a ``result=-1`` (the channel failed or hung up) raises ``CallerHungUp``."""
        reply = await self.send(format_command(verb, *args))
        if reply.result == "-1":
            self._hung_up = True
            raise CallerHungUp(f"caller hung up: {verb} -> {reply.line}")
        return reply

    async def answer(self) -> None:
        await self._result("ANSWER")

    async def stream_file(self, prompt: str, escape_digits: str = "") -> str | None:
        """Play a prompt; the key that interrupted it, or None if it played to the end."""
        return _digit(await self._result("STREAM FILE", prompt, escape_digits))

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> GetDataResult:
        """``GET DATA``: play ONE prompt and collect up to ``max_digits`` keys.

        Asterisk 22 takes the file argument literally: an ``a&b`` list is looked up as one
        file and fails at once (``200 result=-1``). Use ``read_digits`` for a sequence.
        """
        reply = await self._result("GET DATA", prompt, timeout_ms, max_digits)
        if not _DTMF.fullmatch(reply.result):
            raise AgiProtocolError(f"GET DATA result is not DTMF: {reply.line!r}")
        return GetDataResult(digits=reply.result, timed_out=reply.data == "timeout")

    async def read_digits(
        self, prompts: Sequence[str], timeout_ms: int, max_digits: int, *, sensitive: bool = False
    ) -> GetDataResult:
        """Play prompts in sequence and collect up to ``max_digits`` keys (``#`` ends input).

        Two round trips: ``EXEC Read`` (which, unlike ``GET DATA``, plays an ``&`` list and
        skips a missing file instead of failing), then one ``GET FULL VARIABLE`` for the
        digits and ``READSTATUS`` together.

        ``sensitive``: the digits never go into a channel variable (``_read_in_reply``).
        """
        options = read_options(prompts, timeout_ms, max_digits)
        if sensitive:
            return await self._read_in_reply(prompts, timeout_ms, max_digits)
        return await self._read_with_read(options)

    async def _read_in_reply(
        self, prompts: Sequence[str], timeout_ms: int, max_digits: int
    ) -> GetDataResult:
        """A sensitive read: ``GET DATA`` answers the digits in its reply, so no channel
        variable holds them (no AMI ``VarSet`` with them, nothing in ``core show channel`` or
        for a hangup handler). ``GET DATA`` plays one file: the prompts before the last play
        first with ``EXEC Playback`` (keys pressed during them are not kept).

        ``GET DATA`` of a file Asterisk cannot play answers ``result=-1``, as a hang-up does:
        ``CHANNEL STATUS`` tells them apart (``511`` on a dead channel: ``CallerHungUp``).
        With the caller still there nothing was read (a WARNING names the prompt): the flow's
        no-input path follows (a retry, then the field is left unasked), never dead air.
        """
        lead, last = prompts[:-1], prompts[-1]
        if lead:
            await self.exec_app("Playback", "&".join(lead))
        reply = await self.send(format_command("GET DATA", last, max(timeout_ms, 1), max_digits))
        if reply.result == "-1":
            await self.send("CHANNEL STATUS")  # 511 (CallerHungUp) if the caller has gone
            log.warning("GET DATA could not play prompt %r: no digits read", last)
            return GetDataResult(digits="", timed_out=False)
        if not _DTMF.fullmatch(reply.result):
            raise AgiProtocolError(f"GET DATA result is not DTMF: {reply.line!r}")
        return GetDataResult(digits=reply.result, timed_out=reply.data == "timeout")

    async def _read_with_read(self, options: str) -> GetDataResult:
        """``EXEC Read``, then one ``GET FULL VARIABLE`` for the digits and ``READSTATUS``."""
        await self.exec_app("Read", options)
        reply = await self.send(format_command("GET FULL VARIABLE", _READ_OUTCOME))
        digits, _, status = (reply.data or "").partition("|")
        if status == "HANGUP":
            self._hung_up = True
            raise CallerHungUp("caller hung up during Read")
        if status not in READ_STATUSES or not _DTMF.fullmatch(digits):
            raise AgiProtocolError(f"unexpected Read outcome: {reply.line!r}")
        return GetDataResult(digits=digits, timed_out=status == "TIMEOUT")

    async def record_utterance(self, path: str, max_ms: int, silence_s: int) -> str | None:
        """``RECORD FILE <path> wav 0123456789* <max_ms> s=<silence_s>``: what the caller says,
        into ``<path>.wav`` on Asterisk's side. Ends after ``silence_s`` of silence (Asterisk
        counts silence from the start too, and cuts the trailing silence off), at ``max_ms``,
        or at a key: the key is returned (None when it ended by silence or time).

        res_agi.c answers ``(timeout)`` for silence and time alike, ``(dtmf)`` with the key's
        code, ``-1 (hangup)`` and ``-1 (writefile)`` (Asterisk could not create the file:
        ``RecordingFailed``, the caller is still there), ``(randomerror)`` / ``(waitfor)``."""
        if not _RECORD_PATH.fullmatch(path):
            raise ValueError(f"record path must be an absolute path without spaces: {path!r}")
        if max_ms < 1 or silence_s < 1:
            raise ValueError(f"max_ms and silence_s must be positive ({max_ms}, {silence_s})")
        silence = f"s={silence_s}"
        reply = await self.send(
            format_command("RECORD FILE", path, "wav", RECORD_ESCAPE_DIGITS, max_ms, silence)
        )
        if reply.data == "writefile":
            raise RecordingFailed(f"Asterisk could not write {path}.wav: {reply.line}")
        if reply.data == "dtmf":
            return _digit(reply)
        if reply.data == "hangup":
            self._hung_up = True
            raise CallerHungUp(f"caller hung up while recorded: {reply.line}")
        if reply.data == "timeout" and reply.result != "-1":
            return None
        if reply.data in ("randomerror", "waitfor", "timeout"):
            await self.send("CHANNEL STATUS")  # 511 (CallerHungUp) if the caller has gone
            raise RecordingFailed(f"recording failed: {reply.line}")
        raise AgiProtocolError(f"unexpected RECORD FILE reply: {reply.line!r}")

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return _digit(await self._result("WAIT FOR DIGIT", timeout_ms))

    async def set_variable(self, name: str, value: str) -> None:
        await self.send(format_command("SET VARIABLE", name, value))

    async def set_variables(self, values: Mapping[str, str]) -> None:
        """Several variables in ONE command (``EXEC MSet``), whatever their values hold
        (``/``, ``,``, ``|``, quotes, spaces: ``mset_options`` escapes them), so the dialplan
        never sees some without the others: an agent's endpoint set and the outcome not (a
        hang-up or an error between two commands). Fewer round trips, too."""
        if len(values) == 1:
            ((name, value),) = values.items()
            await self.set_variable(name, value)
            return
        pairs = list(values.items())
        for start in range(0, len(pairs), MSET_MAX_PAIRS):  # one batch for up to 23
            await self.exec_app("MSet", mset_options(dict(pairs[start : start + MSET_MAX_PAIRS])))

    async def get_variable(self, name: str) -> str | None:
        """The variable's value, or None when it is not set. At most 1023 bytes of it:
        res_agi.c ``handle_getvariable`` reads it into ``char tempstr[1024]``."""
        reply = await self.send(format_command("GET VARIABLE", name))
        return (reply.data or "") if reply.result == "1" else None

    async def get_full_variable(self, name: str) -> str:
        """The variable's whole value in one ``GET FULL VARIABLE "${name}"`` (not cut at
        1023 bytes like ``GET VARIABLE``); empty when it is not set."""
        if not _VARIABLE_NAME.fullmatch(name):
            raise ValueError(f"not a channel variable name: {name!r}")
        reply = await self.send(format_command("GET FULL VARIABLE", f"${{{name}}}"))
        return reply.data or ""

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.send(format_command("VERBOSE", message, level))

    async def exec_app(self, app: str, options: str) -> str:
        """Run a dialplan application; its result (``-2``: no such application)."""
        reply = await self._result(EXEC, app, options)
        if reply.result == "-2":
            raise ChannelError(f"no such dialplan application: {app!r}")
        return reply.result

    async def hangup(self) -> None:
        """Hang the call up; a caller who already left is not an error."""
        with contextlib.suppress(CallerHungUp):
            await self.send("HANGUP")
        self._hung_up = True
