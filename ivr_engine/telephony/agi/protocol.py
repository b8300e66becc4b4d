"""The AGI wire format as pure functions: header lines, requests, replies, status codes, quoting.

Nothing here does I/O. Every parser raises only ``AgiProtocolError`` (a ``ChannelError``) on
input it cannot accept, so callers never see ``ValueError``/``IndexError`` from hostile bytes.
A command the engine could not send as one AGI line (a line break in it, longer than
``MAX_COMMAND_BYTES``) is ``ValueError`` from ``format_command``/``check_command``: a bug or a
configuration the start-up checks should have refused, raised before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl

from ivr_engine.domain.errors import CallerHungUp, ChannelError, IvrEngineError

MAX_LINE_CHARS = 8192  # a header or reply line longer than this is a protocol error
# res_agi.c reads each command with ``fgets`` into ``char buf[AGI_BUF_LEN]``: at most
# AGI_BUF_LEN-1 bytes, the newline included, arrive as one command. A longer line runs cut
# and its rest becomes a command of its own with its own ``510`` reply: every later reply
# would be taken as the answer to the command before it. AGI_BUF_LEN was 2048 until
# asterisk/asterisk#1318 (2025: 8192, also in 20, 21 and 22 releases since); the engine keeps
# to what every release reads (tests/e2e/test_agi_wire_limits.py pins 22.10's 8191).
AGI_BUF_LEN = 2048
MAX_COMMAND_BYTES = AGI_BUF_LEN - 1  # one command line, UTF-8, with its newline

_HEADER_KEY = re.compile(r"agi_[A-Za-z0-9_]{1,64}")
_STATUS = re.compile(r"(?P<code>[1-5][0-9]{2})(?:(?P<sep>[ -])(?P<text>.*))?", re.DOTALL)
_RESULT = re.compile(
    r"result=(?P<result>[^ ]*)(?: \((?P<data>.*)\))?(?P<extras>(?: [A-Za-z_][A-Za-z0-9_]*=[^ ]*)*)",
    re.DOTALL,
)
_MULTILINE = re.compile(r"([1-5][0-9]{2})-")
_FORBIDDEN_IN_COMMAND = re.compile("[\n\r\0]")  # a search: one C call per string
# ``agi_key: value`` with an optional CR LF; the value without its surrounding blanks.
_HEADER_LINE = re.compile(r"(agi_[A-Za-z0-9_]{1,64}):[ \t]*(.*?)[ \t]*\r?\n?", re.DOTALL)
_SIMPLE_200 = re.compile(r"200 result=(-?[0-9]+)(?: \(([^()]*)\))?")  # no extras: most replies


class AgiProtocolError(ChannelError):
    """The peer sent something that is not AGI (bad header, malformed reply, oversized line)."""


class AgiHeaderError(AgiProtocolError):
    """The ``agi_*`` header block is malformed, incomplete, oversized or too slow."""


class InvalidCommand(ChannelError):
    """``510``: Asterisk does not know the command."""


class UsageError(ChannelError):
    """``520``: Asterisk refused the command's syntax; ``usage`` is its usage text."""

    def __init__(self, usage: str) -> None:
        super().__init__(f"AGI usage error: {usage}" if usage else "AGI usage error")
        self.usage = usage


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


_NO_EXTRAS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AgiReply:
    """One reply: ``200 result=1 (timeout) endpos=11360`` → code, result, data, extras."""

    code: int
    result: str = ""
    data: str | None = None  # the text in parentheses; the usage text for a 520 block
    extras: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    line: str = ""  # the status line as received (for messages)

    def result_int(self) -> int:
        """``result`` as an integer; a non-numeric result is a protocol error."""
        try:
            return int(self.result)
        except ValueError:
            raise AgiProtocolError(f"non-numeric AGI result in {self.line!r}") from None


@dataclass(frozen=True, slots=True)
class AgiRequest:
    """The ``agi_*`` environment Asterisk sends at the start of a call."""

    env: Mapping[str, str]
    script: str  # e.g. "ivr" for agi://host/ivr?menu=main
    query: Mapping[str, str]
    args: tuple[str, ...]
    received: float = 0.0  # time.perf_counter() when the header block was in; 0: unknown

    def _get(self, key: str) -> str | None:
        return self.env.get(key) or None

    @property
    def caller_id(self) -> str | None:
        value = self._get("agi_callerid")
        return None if value is None or value.lower() == "unknown" else value

    @property
    def caller_withheld(self) -> bool:
        """``agi_callingpres`` says presentation restricted (``AST_PRES_RESTRICTED``, 0x20
        under the ``0x60`` mask): the number reached the PBX (e.g. from a P-Asserted-Identity)
        but the caller asked for it not to be shown."""
        value = self._get("agi_callingpres") or ""
        return value.isascii() and value.isdigit() and int(value) & 0x60 == 0x20

    @property
    def channel(self) -> str | None:
        return self._get("agi_channel")

    @property
    def uniqueid(self) -> str | None:
        return self._get("agi_uniqueid")

    @property
    def extension(self) -> str | None:
        return self._get("agi_extension")

    @property
    def context(self) -> str | None:
        return self._get("agi_context")

    @property
    def language(self) -> str | None:
        return self._get("agi_language")


def parse_header_line(line: str) -> tuple[str, str]:
    """``agi_key: value`` (trailing CR/LF allowed, space after the colon optional)."""
    if len(line) > MAX_LINE_CHARS:
        raise AgiHeaderError(f"header line longer than {MAX_LINE_CHARS} characters")
    match = _HEADER_LINE.fullmatch(line)
    if match is None:
        raise AgiHeaderError(f"not an AGI header line: {line[:80]!r}")
    key, value = match.groups()
    if _FORBIDDEN_IN_COMMAND.search(value):
        raise AgiHeaderError(f"control character in header {key}")
    return key, value


def _split_script(raw: str) -> tuple[str, str]:
    """``agi://host:port/ivr?a=b`` or ``ivr?a=b`` or ``/path/x.py`` → (path, query)."""
    if "://" in raw:
        after_scheme = raw.split("://", 1)[1]
        slash = after_scheme.find("/")
        raw = after_scheme[slash:] if slash >= 0 else ""
    path, _, query = raw.partition("?")
    return path.lstrip("/"), query.partition("#")[0]


def parse_request(env: Mapping[str, str], received: float = 0.0) -> AgiRequest:
    """Build the request; the script comes from ``agi_network_script``, else ``agi_request``.
    ``received``: when the header block was in (``time.perf_counter()``)."""
    raw = env.get("agi_network_script") or env.get("agi_request")
    if raw is None:
        raise AgiHeaderError("no agi_request / agi_network_script in the AGI header block")
    path, query = _split_script(raw)
    pairs = parse_qsl(query, keep_blank_values=True, errors="replace")
    args: list[str] = []
    while (arg := env.get(f"agi_arg_{len(args) + 1}")) is not None:
        args.append(arg)
    return AgiRequest(
        env=_frozen(env),
        script=path,
        query=_frozen(dict(pairs)),
        args=tuple(args),
        received=received,
    )


def parse_reply(line: str) -> AgiReply:
    """Parse one status line (not ``HANGUP``, not a ``100`` continuation decision)."""
    text = line.rstrip("\r\n")
    if len(text) > MAX_LINE_CHARS:
        raise AgiProtocolError(f"reply line longer than {MAX_LINE_CHARS} characters")
    simple = _SIMPLE_200.fullmatch(text)
    if simple is not None:
        return AgiReply(200, simple[1], simple[2], _NO_EXTRAS, text)
    status = _STATUS.fullmatch(text)
    if status is None:
        raise AgiProtocolError(f"not an AGI reply: {text[:80]!r}")
    code = int(status["code"])
    if code != 200:
        return AgiReply(code=code, line=text)
    body = _RESULT.fullmatch(status["text"] or "") if status["sep"] == " " else None
    if body is None:
        raise AgiProtocolError(f"malformed 200 reply: {text[:80]!r}")
    # " k=v k=v": split at the single spaces of the grammar (a value may hold a TAB or an
    # NBSP, which str.split() would cut at)
    extras = dict(item.split("=", 1) for item in body["extras"].split(" ")[1:])
    return AgiReply(code, body["result"], body["data"], _frozen(extras), text)


def reply_error(reply: AgiReply) -> IvrEngineError | None:
    """The exception a reply's status code means, or None for ``200``."""
    if reply.code == 200:
        return None
    if reply.code == 510:
        return InvalidCommand(f"AGI command refused: {reply.line}")
    if reply.code == 511:
        return CallerHungUp(f"channel is dead: {reply.line}")
    if reply.code == 520:
        usage = reply.data if reply.data is not None else reply.line.removeprefix("520 ")
        return UsageError(usage)
    return ChannelError(f"unexpected AGI status: {reply.line[:200]!r}")


def quote_arg(value: str) -> str:
    """One command argument in double quotes, ``"`` and ``\\`` escaped; never a newline."""
    if _FORBIDDEN_IN_COMMAND.search(value):
        raise ValueError(f"AGI argument contains a line break or NUL: {value[:40]!r}")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def command_line(verb: str, *args: str | int) -> str:
    """``GET DATA "a&b" 5000 1``: the verb as-is, strings quoted, integers bare; its length
    is not checked (to measure a line, see ``command_bytes``). Use ``format_command`` to send."""
    if not verb or _FORBIDDEN_IN_COMMAND.search(verb):
        raise ValueError(f"AGI command must be one non-empty line: {verb[:40]!r}")
    parts = [str(arg) if isinstance(arg, int) else quote_arg(arg) for arg in args]
    return " ".join([verb, *parts])


def format_command(verb: str, *args: str | int) -> str:
    """``command_line``, refused (``ValueError``) if Asterisk could not read it as one command."""
    line = command_line(verb, *args)
    _check_length(line)
    return line


def command_bytes(command: str) -> int:
    """What the line costs on the wire: UTF-8 bytes with the newline."""
    return len(command.encode("utf-8")) + 1


def multiline_code(line: str) -> int | None:
    """``520-Invalid command syntax...`` opens a block that ends at ``520 ...``: its code."""
    match = _MULTILINE.match(line)
    return int(match[1]) if match else None


def check_command(command: str) -> None:
    """A raw command line must be one line (no CR, LF or NUL) that Asterisk reads whole: at
    most ``MAX_COMMAND_BYTES`` with its newline. ``ValueError`` otherwise, before anything
    is sent, so the session stays in step."""
    if not command or _FORBIDDEN_IN_COMMAND.search(command):
        raise ValueError(f"AGI command must be one non-empty line: {command[:40]!r}")
    _check_length(command)


def _check_length(command: str) -> None:
    # a character is at most 4 UTF-8 bytes: short lines need no encoding to be measured
    if len(command) * 4 < MAX_COMMAND_BYTES:
        return
    size = command_bytes(command)
    if size > MAX_COMMAND_BYTES:
        raise ValueError(
            f"AGI command is {size} bytes with its newline, over the {MAX_COMMAND_BYTES} "
            f"every Asterisk reads as one command (res_agi.c AGI_BUF_LEN {AGI_BUF_LEN}): "
            f"{command[:60]!r}..."
        )


def split_command_args(line: str) -> list[str]:
    """Split a command line the way Asterisk's AGI argument parser does (quotes, backslash)."""
    args: list[str] = []
    current: list[str] | None = None
    quoted = escaped = False
    for char in line:
        if char == "\\" and not escaped:
            escaped = True
            continue
        if char == '"' and not escaped:
            quoted = not quoted
            if current is None:
                current = []
                args.append("")
            continue
        if char in " \t" and not quoted and not escaped:
            if current is not None:
                args[-1] = "".join(current)
                current = None
            continue
        escaped = False
        if current is None:
            current = []
            args.append("")
        current.append(char)
    if current is not None:
        args[-1] = "".join(current)
    return args
