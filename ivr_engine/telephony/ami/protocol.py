"""The AMI wire format as pure functions: banner, header lines, messages, actions.

Asterisk opens with one banner line ``Asterisk Call Manager/<version>\\r\\n``; after that
every message is ``Key: Value\\r\\n`` lines ended by a blank line. A message whose first
header is ``Response`` answers an action (matched by ``ActionID``); one whose first header is
``Event`` is an event. Keys may repeat (``Output`` lines of a ``Command`` response,
``ChanVariable`` lines of channel events): every value is kept, in order.

AMI has no escaping: a CR or LF inside a value would start a new header (header injection),
so ``format_action`` refuses it instead, and also refuses what Asterisk would silently drop
(lines over its 1024-byte input buffer, more than 128 headers).

Nothing here does I/O. Parsers raise only ``AmiProtocolError``; ``format_action`` raises only
``InvalidAction``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import overload

from ivr_engine.telephony.ami.errors import AmiActionFailed, AmiProtocolError, InvalidAction

BANNER_PREFIX = "Asterisk Call Manager/"
#: Asterisk reads action lines into a 1024-byte buffer (CRLF included) and drops longer ones.
MAX_ACTION_LINE_BYTES = 1024
#: AST_MAX_MANHEADERS: Asterisk ignores headers of an action past the 128th.
MAX_ACTION_HEADERS = 128

HeaderValue = str | int | Sequence[str]
"""A header value for ``format_action``: a string, an int (bools become ``true``/``false``)
or a sequence of strings, sent as the same header repeated (``Variable`` of ``Originate``)."""

_ACTION_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_RESERVED_KEYS = frozenset({"action", "actionid"})
_FORBIDDEN_IN_VALUE = ("\r", "\n", "\0")
_OK_RESPONSES = frozenset({"success", "goodbye", "follows"})
_LIST_ENDS = frozenset({"complete", "cancelled"})

Header = tuple[str, str]


def decode_line(raw: bytes) -> str:
    """One received line without its line ending. Bytes that are not UTF-8 (a caller name
    from a Latin-1 phone, a hostile peer) become U+FFFD: they are data, not a reason to drop."""
    return raw.decode("utf-8", "replace").rstrip("\r\n")


def parse_banner(line: str) -> str:
    """``Asterisk Call Manager/11.0.0`` → ``"11.0.0"``; anything else is not AMI."""
    if not line.startswith(BANNER_PREFIX) or len(line) > 200:
        raise AmiProtocolError(f"not an Asterisk Manager Interface banner: {line[:80]!r}")
    return line[len(BANNER_PREFIX) :].strip()


def parse_header_line(line: str) -> Header:
    """``Key: Value`` → ``("Key", "Value")``. Only the one space Asterisk writes after the
    colon is removed, so indented ``Output:`` lines keep their indentation."""
    key, sep, value = line.partition(":")
    key = key.strip()
    if not sep or not key:
        raise AmiProtocolError(f"AMI line is not 'Key: Value': {line[:80]!r}")
    return key, value[1:] if value.startswith(" ") else value


@dataclass(frozen=True, slots=True)
class AmiMessage:
    """One AMI message: its headers in wire order, looked up case-insensitively.

    ``get`` returns the first value of a key, ``get_all`` every value of a repeated key.
    """

    headers: tuple[Header, ...]
    # lower-cased key -> first value: one C-speed dict comprehension per message (the bridge
    # builds ~10,000 messages a second); every value of a repeated key is found in get_all.
    _first: Mapping[str, str] = field(
        init=False, repr=False, compare=False, default_factory=lambda: MappingProxyType({})
    )

    def __post_init__(self) -> None:
        first = {key.lower(): value for key, value in reversed(self.headers)}
        object.__setattr__(self, "_first", MappingProxyType(first))

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...
    def get(self, key: str, default: str | None = None) -> str | None:
        return self._first.get(key.lower(), default)

    def get_all(self, key: str) -> tuple[str, ...]:
        lower = key.lower()
        if lower not in self._first:
            return ()
        if len(self._first) == len(self.headers):  # no key repeats: the first is the only one
            return (self._first[lower],)
        return tuple(value for k, value in self.headers if k.lower() == lower)

    def __getitem__(self, key: str) -> str:
        value = self._first.get(key.lower())
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._first

    def __iter__(self) -> Iterator[Header]:
        return iter(self.headers)

    def to_dict(self) -> dict[str, str | list[str]]:
        """Keys as first sent; a repeated key maps to the list of its values."""
        result: dict[str, str | list[str]] = {}
        seen: set[str] = set()
        for key, _ in self.headers:
            if key.lower() not in seen:
                seen.add(key.lower())
                values = self.get_all(key)
                result[key] = list(values) if len(values) > 1 else values[0]
        return result

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")


@dataclass(frozen=True, slots=True)
class AmiResponse(AmiMessage):
    """The answer to one action: ``Response: Success`` / ``Error`` / ``Goodbye`` ..."""

    @property
    def response(self) -> str:
        return self.get("Response", "")

    @property
    def ok(self) -> bool:
        return self.response.lower() in _OK_RESPONSES

    @property
    def message(self) -> str:
        return self.get("Message", "")

    @property
    def starts_list(self) -> bool:
        """``EventList: start``: the action's results follow as events with its ActionID."""
        return self.get("EventList", "").lower() == "start"

    @property
    def output(self) -> tuple[str, ...]:
        """The ``Output`` lines of a ``Command`` response, in order."""
        return self.get_all("Output")

    def raise_for_error(self) -> AmiResponse:
        """Return self if ``ok``, else raise ``AmiActionFailed`` with Asterisk's message."""
        if not self.ok:
            raise AmiActionFailed(self)
        return self


@dataclass(frozen=True, slots=True)
class AmiEvent(AmiMessage):
    """An event pushed by Asterisk (``Event: Newchannel`` ...)."""

    @property
    def name(self) -> str:
        return self._first.get("event", "")  # get("Event", ""), read several times per event

    @property
    def ends_list(self) -> bool:
        """``EventList: Complete`` (or ``Cancelled``): the last event of an action's list."""
        return self.get("EventList", "").lower() in _LIST_ENDS


def build_message(headers: Sequence[Header]) -> AmiResponse | AmiEvent | None:
    """Classify a received message by its first header; None if it is neither a response nor
    an event (the AMI rules say the first header is one of them)."""
    if not headers:
        return None
    first = headers[0][0].lower()
    if first == "response":
        return AmiResponse(tuple(headers))
    if first == "event":
        return AmiEvent(tuple(headers))
    return None


def parse_message(lines: Iterable[str]) -> AmiResponse | AmiEvent | None:
    """A whole message from its lines (without the ending blank line)."""
    return build_message([parse_header_line(line) for line in lines])


def _value_strings(key: str, value: HeaderValue) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidAction(
        f"header {key!r}: a value is a str, an int or a list of str, not {type(value).__name__}"
    )


def _check_value(key: str, value: str) -> None:
    if any(c in value for c in _FORBIDDEN_IN_VALUE):
        raise InvalidAction(
            f"header {key!r}: CR, LF and NUL cannot be sent in an AMI value (no escaping exists)"
        )


def action_headers(name: str, action_id: str, headers: Mapping[str, HeaderValue]) -> list[Header]:
    """The validated header lines of an action, ``Action`` and ``ActionID`` first."""
    if not _ACTION_KEY.fullmatch(name):
        raise InvalidAction(f"invalid AMI action name {name!r}")
    _check_value("ActionID", action_id)
    lines: list[Header] = [("Action", name), ("ActionID", action_id)]
    for key, value in headers.items():
        if not _ACTION_KEY.fullmatch(key):
            raise InvalidAction(f"invalid AMI header name {key!r}")
        if key.lower() in _RESERVED_KEYS:
            raise InvalidAction(f"header {key!r} is set by the client")
        for text in _value_strings(key, value):
            _check_value(key, text)
            lines.append((key, text))
    return lines


def format_action(name: str, action_id: str, headers: Mapping[str, HeaderValue]) -> bytes:
    """The bytes of one action message, or ``InvalidAction`` if it cannot be sent safely."""
    lines = action_headers(name, action_id, headers)
    if len(lines) > MAX_ACTION_HEADERS:
        raise InvalidAction(
            f"{name}: {len(lines)} headers, Asterisk reads at most {MAX_ACTION_HEADERS}"
        )
    encoded = [f"{key}: {value}\r\n".encode() for key, value in lines]
    for (key, _), line in zip(lines, encoded, strict=True):
        if len(line) > MAX_ACTION_LINE_BYTES:
            raise InvalidAction(
                f"{name}: header {key!r} is {len(line)} bytes, Asterisk drops lines over "
                f"{MAX_ACTION_LINE_BYTES}"
            )
    return b"".join(encoded) + b"\r\n"
