"""Bounded AMI message framing over received bytes, without I/O.

``AmiFramer.feed(chunk)`` takes whatever the socket returned (any size, split anywhere, even
inside a UTF-8 character) and returns the messages completed by it, each as its header lines.
A message ends at a blank line; blank lines between messages are skipped; a bare LF ends a
line as well as CRLF. Every read is bounded: a line longer than ``max_line_bytes`` (its line
ending included) or a message larger than ``max_message_bytes`` is an ``AmiProtocolError``,
so a hostile or broken peer costs at most about one chunk plus ``max_message_bytes``.

Reading a whole chunk and splitting it here costs one ``await`` per chunk instead of one per
line (an AMI event is ~20 lines): see bench/results.md, bridge throughput.

Two paths give the same messages. The fast one takes each message that lies whole in the
chunk, in the form Asterisk writes (CRLF lines ``Key: Value``, a key without a colon or
surrounding spaces, shorter than both limits), with one decode and one split per message
instead of a decode, a strip and a partition per line. Anything else (a message split
across reads, bare LF, a missing space after the colon, blank lines between messages, a
line too long ...) goes through the line-at-a-time path, which decides every rule and
every error.

``feed_raw`` goes one step further for the commonest form, a *plain* message (ASCII, keys
without blanks, exactly one colon on each line, followed by a space): it is checked with a
few C-speed byte operations and handed on as its text, not split (``AmiMessage.plain``);
``feed`` gives every message as its header lines.

Asterisk >= 14 is required: before 14, ``Command`` was answered ``Response: Follows`` with
raw output lines (no colon) up to ``--END COMMAND--``; such a message is refused with an
``AmiProtocolError`` that says so, not parsed.
"""

from __future__ import annotations

from itertools import repeat

from ivr_engine.telephony.ami.errors import AmiConnectionLost, AmiProtocolError
from ivr_engine.telephony.ami.messages import Header, plain_headers
from ivr_engine.telephony.ami.parsing import parse_header_line

_END = b"\r\n\r\n"  # the end of a message as Asterisk writes it
_SEP = ": "


class AmiFramer:
    """Splits a received byte stream into AMI messages (lists of header lines)."""

    __slots__ = ("_fast_limit", "_headers", "_max_line", "_max_message", "_partial", "_size")

    def __init__(self, *, max_line_bytes: int, max_message_bytes: int) -> None:
        self._max_line = max_line_bytes
        self._max_message = max_message_bytes
        # a block of fewer bytes breaks neither limit: its lines are shorter than the block +
        # CRLF, and the exact path counts the message as the block + CRLF CRLF
        self._fast_limit = min(max_line_bytes, max_message_bytes - 1) - 2
        self._partial = b""  # the last, unfinished line
        self._headers: list[Header] = []  # the unfinished message
        self._size = 0  # its bytes so far

    def feed(self, data: bytes) -> list[list[Header]]:
        """The messages that ``data`` completes, in order."""
        return [
            list(plain_headers(message)) if isinstance(message, str) else message
            for message in self.feed_raw(data)
        ]

    def feed_raw(self, data: bytes) -> list[str | list[Header]]:
        """``feed``, with each plain message as its text (see the module docstring)."""
        buffer = self._partial + data if self._partial else data
        cut = buffer.rfind(b"\n") + 1
        self._partial = buffer[cut:]
        if len(self._partial) >= self._max_line:  # cannot end within the limit any more
            raise AmiProtocolError(f"AMI line longer than {self._max_line} bytes")
        if not cut:
            return []
        messages: list[str | list[Header]] = []
        *whole, tail = buffer[:cut].split(_END)  # tail: lines of an unfinished message
        if whole and self._headers:  # the first piece ends the message under way
            self._lines((whole.pop(0) + _END)[:-1].split(b"\n"), messages)
        limit = self._fast_limit
        for block in whole:
            message = _plain(block) if len(block) < limit else None
            if message is None:
                self._lines((block + _END)[:-1].split(b"\n"), messages)
            else:
                messages.append(message)
        if tail:
            self._lines(tail[:-1].split(b"\n"), messages)
        return messages

    def _lines(self, lines: list[bytes], messages: list[str | list[Header]]) -> None:
        """The exact path: ``lines`` (each without its LF) in order, any form AMI allows."""
        headers, size = self._headers, self._size
        max_line, max_message = self._max_line, self._max_message
        for raw in lines:
            length = len(raw) + 1
            if length > max_line:
                raise AmiProtocolError(f"AMI line longer than {max_line} bytes")
            size += length
            if size > max_message:
                raise AmiProtocolError(f"AMI message larger than {max_message} bytes")
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if line:
                key, sep, value = line.partition(":")  # parse_header_line, inlined
                if not sep or not key or key.strip() != key:
                    key, value = _odd_line(line, headers)  # the rare forms, or the error
                elif value[:1] == " ":
                    value = value[1:]
                headers.append((key, value))
            elif headers:
                messages.append(headers)
                headers, size = [], 0
            else:
                size = 0
        self._headers, self._size = headers, size

    def eof_error(self) -> AmiConnectionLost:
        """What the peer closing the connection now means."""
        where = "in the middle of a message" if self._headers or self._partial else "by the peer"
        return AmiConnectionLost(f"AMI connection closed {where}")


def _odd_line(line: str, headers: list[Header]) -> Header:
    """``parse_header_line``; its error names the cause in a legacy ``Response: Follows``."""
    try:
        return parse_header_line(line)
    except AmiProtocolError:
        if headers and [h.lower() for h in headers[0]] == ["response", "follows"]:
            raise AmiProtocolError(
                "AMI 'Response: Follows' (Command output of Asterisk 13 or older) is not "
                "supported: the AMI client needs Asterisk >= 14"
            ) from None
        raise


def _plain(block: bytes) -> str | list[Header] | None:
    """A whole message (without its final CRLF CRLF): its text if plain, else its headers
    if in Asterisk's form, else None (the exact path decides)."""
    text = plain_text(block)
    return _plain_message(block) if text is None else text


# what a plain message's structure is made of: line ends, colons, spaces and the other
# blanks ``str.strip`` removes in ASCII (all made a TAB); every other byte is dropped
_OTHER_BLANKS = b"\t\x0b\x0c\x1c\x1d\x1e\x1f"
_BLANKS = bytes.maketrans(_OTHER_BLANKS, b"\t" * len(_OTHER_BLANKS))
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b"\r\n: " + _OTHER_BLANKS)))


def plain_text(block: bytes) -> str | None:
    """The text of a whole message (without its final CRLF CRLF) if it is plain: ASCII,
    lines ended by CRLF (no other CR or LF), each ``Key: Value`` with exactly one colon,
    the key not empty and without blanks. Such a text gives what the exact path gives
    (``messages.plain_headers``); else None. C-speed byte operations only: what is left of
    the block without its key and value characters (``skeleton``, a few bytes a line) must
    be ``": "`` + the value's blanks on each line, the lines joined by CRLF."""
    if not block.isascii() or block[:1] == b":" or b"\n:" in block:
        return None  # not ASCII, or an empty key
    skeleton = block.translate(_BLANKS, _NOT_STRUCTURE)
    lines = skeleton.count(b"\n") + 1
    if (
        skeleton[:1] != b":"  # a blank before the first colon: in the key
        or skeleton.count(b"\n:") != lines - 1  # the same on another line
        or skeleton.count(b":") != lines  # so: one colon a line, the first thing after a CRLF
        or skeleton.count(b": ") != lines  # each followed by a space...
        or block.count(b": ") != lines  # ...right after it ("Key:value " is not plain)
        or skeleton.count(b"\r") != lines - 1
        or block.count(b"\r\n") != lines - 1  # no CR or LF but CRLF (in the block: a CR
        # and an LF side by side in the skeleton may have had a value's text between them)
    ):
        return None
    return block.decode("ascii")


def _plain_message(block: bytes) -> list[Header] | None:
    """The headers of one whole message (without its final CRLF CRLF) if every line is
    ``Key: Value`` + CRLF, the key without a colon or surrounding whitespace; else None (the
    exact path decides). The result is what the exact path gives for such a message:
    decoding the block at once equals decoding it line by line, since LF and CR never
    continue a UTF-8 sequence."""
    text = block.decode("utf-8", "replace")
    lines = text.split("\r\n")
    crlfs = len(lines) - 1
    if text.count("\n") != crlfs or text.count("\r") != crlfs:
        return None  # a bare LF or CR: a line boundary (or a stripped CR) of the exact path
    headers: list[Header] = []
    for key, sep, value in map(str.partition, lines, repeat(_SEP)):
        if not sep or not key or ":" in key or key.strip() != key:
            return None  # not "Key: Value" with a plain key: the exact path decides
        headers.append((key, value))
    return headers
