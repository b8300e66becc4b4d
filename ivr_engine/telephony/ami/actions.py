"""Formatting AMI actions for the wire, as pure functions: ``format_action``.

An action is ``Action`` and ``ActionID`` then its own ``Key: Value\\r\\n`` lines, ended by a
blank line. AMI has no escaping: a CR or LF inside a value would start a new header (header
injection), so ``format_action`` refuses it instead, and also refuses what Asterisk would
silently drop (lines over its 1024-byte input buffer, more than 128 headers).

Nothing here does I/O. ``format_action`` raises only ``InvalidAction``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ivr_engine.telephony.ami.errors import InvalidAction
from ivr_engine.telephony.ami.messages import Header

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
