"""Parsing received AMI text as pure functions: the banner, header lines, whole messages.

Asterisk opens with one banner line ``Asterisk Call Manager/<version>\\r\\n``; after that
every message is ``Key: Value\\r\\n`` lines ended by a blank line, classified by its first
header (``Response`` or ``Event``: see ``messages.py``). Splitting a byte stream into
messages is ``framing.py``.

Nothing here does I/O. These parsers raise only ``AmiProtocolError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ivr_engine.telephony.ami.errors import AmiProtocolError
from ivr_engine.telephony.ami.messages import AmiEvent, AmiResponse, Header

BANNER_PREFIX = "Asterisk Call Manager/"


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


def build_message(headers: Sequence[Header]) -> AmiResponse | AmiEvent | None:
    """Classify a received message by its first header; None if it is neither a response nor
    an event (the AMI rules say the first header is one of them)."""
    if not headers:
        return None
    first = headers[0][0].lower()
    if first == "response":
        return AmiResponse(headers)
    if first == "event":
        return AmiEvent(headers)
    return None


def build_plain(text: str) -> AmiResponse | AmiEvent | None:
    """``build_message`` for a plain message's text (see ``AmiMessage.plain``)."""
    first = text[: text.find(":")].lower()
    if first == "event":
        return AmiEvent.plain(text)
    if first == "response":
        return AmiResponse.plain(text)
    return None


def parse_message(lines: Iterable[str]) -> AmiResponse | AmiEvent | None:
    """A whole message from its lines (without the ending blank line)."""
    return build_message([parse_header_line(line) for line in lines])
