"""Bounded AMI message framing over received bytes, without I/O.

``AmiFramer.feed(chunk)`` takes whatever the socket returned (any size, split anywhere, even
inside a UTF-8 character) and returns the messages completed by it, each as its header lines.
A message ends at a blank line; blank lines between messages are skipped; a bare LF ends a
line as well as CRLF. Every read is bounded: a line longer than ``max_line_bytes`` (its line
ending included) or a message larger than ``max_message_bytes`` is an ``AmiProtocolError``,
so a hostile or broken peer costs at most about one chunk plus ``max_message_bytes``.

Reading a whole chunk and splitting it here costs one ``await`` per chunk instead of one per
line (an AMI event is ~20 lines): see bench/results.md, bridge throughput.
"""

from __future__ import annotations

from ivr_engine.telephony.ami.errors import AmiConnectionLost, AmiProtocolError
from ivr_engine.telephony.ami.protocol import Header, parse_header_line


class AmiFramer:
    """Splits a received byte stream into AMI messages (lists of header lines)."""

    __slots__ = ("_headers", "_max_line", "_max_message", "_partial", "_size")

    def __init__(self, *, max_line_bytes: int, max_message_bytes: int) -> None:
        self._max_line = max_line_bytes
        self._max_message = max_message_bytes
        self._partial = b""  # the last, unfinished line
        self._headers: list[Header] = []  # the unfinished message
        self._size = 0  # its bytes so far

    def feed(self, data: bytes) -> list[list[Header]]:
        """The messages that ``data`` completes, in order."""
        buffer = self._partial + data if self._partial else data
        cut = buffer.rfind(b"\n") + 1
        self._partial = buffer[cut:]
        if len(self._partial) >= self._max_line:  # cannot end within the limit any more
            raise AmiProtocolError(f"AMI line longer than {self._max_line} bytes")
        if not cut:
            return []
        messages: list[list[Header]] = []
        headers, size = self._headers, self._size
        max_line, max_message = self._max_line, self._max_message
        for raw in buffer[: cut - 1].split(b"\n"):
            length = len(raw) + 1
            if length > max_line:
                raise AmiProtocolError(f"AMI line longer than {max_line} bytes")
            size += length
            if size > max_message:
                raise AmiProtocolError(f"AMI message larger than {max_message} bytes")
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if line:
                key, sep, value = line.partition(":")  # parse_header_line, inlined: hot
                if not sep or not key or key.strip() != key:
                    key, value = parse_header_line(line)  # the rare forms, or the error
                elif value[:1] == " ":
                    value = value[1:]
                headers.append((key, value))
            elif headers:
                messages.append(headers)
                headers, size = [], 0
            else:
                size = 0
        self._headers, self._size = headers, size
        return messages

    def eof_error(self) -> AmiConnectionLost:
        """What the peer closing the connection now means."""
        where = "in the middle of a message" if self._headers or self._partial else "by the peer"
        return AmiConnectionLost(f"AMI connection closed {where}")
