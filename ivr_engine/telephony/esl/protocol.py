"""The Event Socket wire format as pure functions: frames, replies, events, commands.

A frame is a header block (``Name: value`` lines ending with a blank line) and, when the
block has ``Content-Length: N``, exactly N bytes of body. ``Content-Type`` says what it is:
``auth/request``, ``command/reply`` (``Reply-Text: +OK ...`` / ``-ERR ...``),
``api/response`` (the body is the output), ``text/event-plain`` (the body is an event:
URL-encoded ``Name: value`` lines, a blank line, and the event's own body when it has a
``Content-Length``), ``text/event-json`` (the body is one JSON object, its body under
``_body``), ``text/disconnect-notice``. In outbound mode the reply to ``connect`` is a
``command/reply`` whose headers are the channel's data, URL-encoded like an event.

Nothing here does I/O. Every parser raises only ``EslProtocolError`` on input it cannot
accept, so callers never see ``ValueError``/``UnicodeError`` from hostile bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final
from urllib.parse import unquote

from ivr_engine.telephony.esl.errors import EslProtocolError

MAX_HEADER_BYTES: Final = 64 * 1024  # the connect reply carries every channel variable
MAX_BODY_BYTES: Final = 1024 * 1024  # events with SDP are 10-20 KB; 1 MiB is generous
MAX_HEADER_NAME: Final = 256
_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII without ':' or spaces
_DIGITS = re.compile(r"[0-9]{1,10}")
_FORBIDDEN = ("\n", "\r", "\0")


class ContentType(StrEnum):
    AUTH_REQUEST = "auth/request"
    COMMAND_REPLY = "command/reply"
    API_RESPONSE = "api/response"
    EVENT_PLAIN = "text/event-plain"
    EVENT_JSON = "text/event-json"
    DISCONNECT_NOTICE = "text/disconnect-notice"
    RUDE_REJECTION = "text/rude-rejection"  # the inbound ACL refused this address
    LOG_DATA = "log/data"


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class EslFrame:
    headers: Mapping[str, str]
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


@dataclass(frozen=True, slots=True)
class EslReply:
    """A ``command/reply``: ``Reply-Text`` and any other headers."""

    text: str
    headers: Mapping[str, str] = field(default_factory=lambda: _frozen({}))

    @property
    def ok(self) -> bool:
        return self.text.startswith("+OK")


@dataclass(frozen=True, slots=True)
class EslEvent:
    """One event, header values URL-decoded; ``body`` is the event's own body, if any."""

    headers: Mapping[str, str]
    body: str = ""

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name", "")

    @property
    def subclass(self) -> str:
        return self.headers.get("Event-Subclass", "")

    @property
    def unique_id(self) -> str:
        return self.headers.get("Unique-ID", "")

    def get(self, key: str, default: str = "") -> str:
        return self.headers.get(key, default)

    def variable(self, name: str) -> str | None:
        """A channel variable the event carries (``variable_<name>``)."""
        return self.headers.get(f"variable_{name}")


@dataclass(frozen=True, slots=True)
class ChannelData:
    """What the reply to ``connect`` says about the call (outbound mode)."""

    headers: Mapping[str, str]

    def _get(self, key: str) -> str | None:
        return self.headers.get(key) or None

    @property
    def unique_id(self) -> str | None:
        return self._get("Unique-ID") or self._get("Channel-Unique-ID")

    @property
    def caller_id(self) -> str | None:
        return self._get("Caller-Caller-ID-Number") or self._get("Channel-Caller-ID-Number")

    @property
    def caller_withheld(self) -> bool:
        """FreeSWITCH's ``Caller-Privacy-Hide-Number``: the caller asked not to show it."""
        return (self._get("Caller-Privacy-Hide-Number") or "").lower() == "true"

    @property
    def caller_name(self) -> str | None:
        return self._get("Caller-Caller-ID-Name")

    @property
    def channel_name(self) -> str | None:
        return self._get("Channel-Name") or self._get("Caller-Channel-Name")

    @property
    def destination(self) -> str | None:
        return self._get("Caller-Destination-Number")

    def variable(self, name: str) -> str | None:
        return self._get(f"variable_{name}")


# ------------------------------------------------------------------ frames


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def parse_header_lines(text: str, *, url_decoded: bool = False) -> dict[str, str]:
    """``Name: value`` lines (CR tolerated, blank lines skipped); a repeated name keeps the
    last value. ``url_decoded``: values are URL-decoded (events, the connect reply); a
    broken escape stays literal and invalid UTF-8 becomes U+FFFD, never an error."""
    headers: dict[str, str] = {}
    for raw_line in text.split("\n"):
        line = raw_line.rstrip("\r")
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or len(name) > MAX_HEADER_NAME or not _NAME.fullmatch(name):
            raise EslProtocolError(f"not an ESL header line: {line[:80]!r}")
        value = value.lstrip(" ")
        headers[name] = unquote(value, errors="replace") if url_decoded else value
    return headers


def parse_header_block(raw: bytes, limit: int = MAX_HEADER_BYTES) -> dict[str, str]:
    """A frame's header block (the bytes up to and including the blank line), at most
    ``limit`` bytes (``EslLimits.max_header_bytes`` on a connection)."""
    if len(raw) > limit:
        raise EslProtocolError(f"header block larger than {limit} bytes")
    headers = parse_header_lines(_text(raw))
    if not headers:
        raise EslProtocolError("empty ESL header block")
    return headers


def body_length(headers: Mapping[str, str], limit: int = MAX_BODY_BYTES) -> int:
    """The ``Content-Length`` of a frame (0 when absent), checked against ``limit``."""
    raw = headers.get("Content-Length")
    if raw is None:
        return 0
    if not _DIGITS.fullmatch(raw.strip()):
        raise EslProtocolError(f"bad Content-Length: {raw[:40]!r}")
    length = int(raw.strip())
    if length > limit:
        raise EslProtocolError(f"Content-Length {length} exceeds the {limit}-byte limit")
    return length


def check_frame(headers: Mapping[str, str]) -> None:
    if "Content-Type" not in headers:
        raise EslProtocolError(f"ESL frame without Content-Type: {sorted(headers)[:5]}")


# ------------------------------------------------------------------ replies and events


def decode_reply(frame: EslFrame) -> EslReply:
    if frame.content_type != ContentType.COMMAND_REPLY:
        raise EslProtocolError(f"expected command/reply, got {frame.content_type!r}")
    return EslReply(frame.headers.get("Reply-Text", ""), _frozen(frame.headers))


def decode_channel_data(frame: EslFrame) -> ChannelData:
    """The reply to ``connect``: its header values are URL-encoded channel data."""
    reply = decode_reply(frame)
    decoded = {k: unquote(v, errors="replace") for k, v in reply.headers.items()}
    if not decoded.get("Reply-Text", "").startswith("+OK"):
        raise EslProtocolError(f"connect refused: {decoded.get('Reply-Text', '')[:80]!r}")
    data = ChannelData(_frozen(decoded))
    if data.unique_id is None:
        raise EslProtocolError("the connect reply carries no Unique-ID")
    return data


def decode_event_plain(body: bytes) -> EslEvent:
    head, _, rest = body.partition(b"\n\n")
    headers = parse_header_lines(_text(head), url_decoded=True)
    if "Event-Name" not in headers:
        raise EslProtocolError("event without Event-Name")
    length = body_length(headers)
    if length and len(rest) < length:
        raise EslProtocolError(f"event body truncated: {len(rest)} of {length} bytes")
    return EslEvent(_frozen(headers), _text(rest[:length]) if length else "")


def decode_event_json(body: bytes) -> EslEvent:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: recursion
        raise EslProtocolError(f"event-json body is not JSON: {exc!r:.200}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Event-Name"), str):
        raise EslProtocolError("event-json body is not an object with Event-Name")
    event_body = doc.pop("_body", "")
    try:
        headers = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()}
    except RecursionError:  # loads took it, dumps from deeper in the stack may not
        raise EslProtocolError("event-json body nested too deeply") from None
    return EslEvent(_frozen(headers), event_body if isinstance(event_body, str) else "")


def decode_event(frame: EslFrame) -> EslEvent:
    if frame.content_type == ContentType.EVENT_PLAIN:
        return decode_event_plain(frame.body)
    if frame.content_type == ContentType.EVENT_JSON:
        return decode_event_json(frame.body)
    raise EslProtocolError(f"not an event frame: {frame.content_type!r}")


def is_event(frame: EslFrame) -> bool:
    return frame.content_type in (ContentType.EVENT_PLAIN, ContentType.EVENT_JSON)


# ------------------------------------------------------------------ commands


def check_line(value: str) -> None:
    if any(c in value for c in _FORBIDDEN):
        raise ValueError(f"ESL command text may not contain CR, LF or NUL: {value[:40]!r}")


def encode_command(line: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """``line`` then ``Name: value`` lines, ended by a blank line."""
    if not line:
        raise ValueError("empty ESL command")
    parts = [line]
    for name, value in headers:
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid ESL header name {name!r}")
        check_line(value)
        parts.append(f"{name}: {value}")
    check_line(line)
    return ("\n".join(parts) + "\n\n").encode("utf-8")


def execute_headers(app: str, arg: str, event_uuid: str) -> list[tuple[str, str]]:
    """``sendmsg`` headers that run one dialplan application, in order (``event-lock``),
    tagged with ``Event-UUID`` (echoed as ``Application-UUID`` when it completes)."""
    return [
        ("call-command", "execute"),
        ("execute-app-name", app),
        ("execute-app-arg", arg),
        ("event-lock", "true"),
        ("Event-UUID", event_uuid),
    ]
