"""AMI messages as received: ``AmiMessage`` and its two kinds, ``AmiResponse`` and ``AmiEvent``.

A message is ``Key: Value`` header lines; one whose first header is ``Response`` answers an
action (matched by ``ActionID``), one whose first header is ``Event`` is an event. Keys may
repeat (``Output`` lines of a ``Command`` response, ``ChanVariable`` lines of channel
events): every value is kept, in order. Reading them from the wire is ``parsing.py``.

Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Self, overload

from ivr_engine.telephony.ami.errors import AmiActionFailed

_OK_RESPONSES = frozenset({"success", "goodbye"})  # not "Follows": see framing.py
_LIST_ENDS = frozenset({"complete", "cancelled"})

Header = tuple[str, str]


class AmiMessage:
    """One AMI message: its headers in wire order, looked up case-insensitively.

    ``get`` returns the first value of a key, ``get_all`` every value of a repeated key.
    Immutable, equal (and hashing alike) when of the same class with the same headers.

    A message the framer read in Asterisk's own plain form (``plain``: ASCII, every line
    ``Key: Value`` with exactly one colon) keeps its text, and ``get`` finds a key by one
    search in it: the bridge reads ~8 of an event's ~20 headers, ~10,000 events a second,
    and splitting all of them into strings, tuples and a lower-cased index was most of its
    AMI read cost. ``headers`` and the index are built only when asked for, with the same
    result (tests/component/test_ami_plain_messages.py).
    """

    __slots__ = ("_first", "_headers", "_low", "_text")

    _first: dict[str, str] | None  # lower-cased key -> first value, built on first use
    _headers: tuple[Header, ...] | None
    _text: str | None  # a plain message's text (no final CRLF), else None
    _low: str | None  # "\n" + its text lower-cased: where ``get`` searches

    def __init__(self, headers: Iterable[Header]) -> None:
        _set = object.__setattr__
        _set(self, "_headers", tuple(headers))
        _set(self, "_first", None)
        _set(self, "_text", None)
        _set(self, "_low", None)

    @classmethod
    def plain(cls, text: str) -> Self:
        """A message from its text, which ``framing.plain_text`` accepted (nothing else:
        ``get`` relies on its form)."""
        message = object.__new__(cls)
        _set = object.__setattr__
        _set(message, "_headers", None)
        _set(message, "_first", None)
        _set(message, "_text", text)
        _set(message, "_low", "\n" + text.lower())
        return message

    @property
    def headers(self) -> tuple[Header, ...]:
        headers = self._headers
        if headers is None:
            assert self._text is not None
            headers = plain_headers(self._text)
            object.__setattr__(self, "_headers", headers)
        return headers

    def _index(self) -> dict[str, str]:
        first = self._first
        if first is None:
            first = {key.lower(): value for key, value in reversed(self.headers)}
            object.__setattr__(self, "_first", first)
        return first

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, AmiMessage)
        return self.headers == other.headers

    def __hash__(self) -> int:
        return hash((self.headers,))

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}(headers={self.headers!r})"

    def __reduce__(self) -> tuple[type[AmiMessage], tuple[tuple[Header, ...]]]:
        return type(self), (self.headers,)  # copy and pickle, as the dataclass did

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...
    def get(self, key: str, default: str | None = None) -> str | None:
        low = self._low
        if low is None:
            return self._index().get(key.lower(), default)
        needle = _NEEDLES.get(key) or _needle(key)
        at = low.find(needle) if needle else -1
        if at < 0:
            return default
        text = self._text
        assert text is not None
        start = at + len(needle)  # low[i + 1] is text[i]; the colon is followed by a space
        end = text.find("\r", start)
        return text[start:] if end < 0 else text[start:end]

    def get_all(self, key: str) -> tuple[str, ...]:
        first = self._index()
        lower = key.lower()
        if lower not in first:
            return ()
        if len(first) == len(self.headers):  # no key repeats: the first is the only one
            return (first[lower],)
        return tuple(value for k, value in self.headers if k.lower() == lower)

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

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


_NEEDLES: dict[str, str] = {}  # lookup key -> what ``get`` searches a plain message for
_MAX_NEEDLES = 4096


def _needle(key: str) -> str:
    """``"\\n<key lower-cased>:"``, or "" for a key no plain message can hold (a colon, a
    line break, surrounding blanks, not ASCII once lower-cased, empty)."""
    needle = _NEEDLES.get(key)
    if needle is None:
        lower = key.lower()
        plain = lower.isascii() and lower == lower.strip() and not _NOT_IN_KEY & set(lower)
        needle = f"\n{lower}:" if plain and lower else ""
        if len(_NEEDLES) >= _MAX_NEEDLES:
            _NEEDLES.clear()
        _NEEDLES[key] = needle
    return needle


_NOT_IN_KEY = frozenset(":\r\n")


def plain_headers(text: str) -> tuple[Header, ...]:
    """The headers of a plain message's text: each line holds exactly one ``": "``."""
    pieces = text.replace("\r\n", ": ").split(": ")
    return tuple(zip(pieces[0::2], pieces[1::2], strict=True))


class AmiResponse(AmiMessage):
    """The answer to one action: ``Response: Success`` / ``Error`` / ``Goodbye`` ..."""

    __slots__ = ()

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


class AmiEvent(AmiMessage):
    """An event pushed by Asterisk (``Event: Newchannel`` ...)."""

    __slots__ = ("_name",)

    _name: str

    @property
    def name(self) -> str:
        try:
            return self._name  # read several times per event
        except AttributeError:
            name = self.get("Event", "")
            object.__setattr__(self, "_name", name)
            return name

    @property
    def ends_list(self) -> bool:
        """``EventList: Complete`` (or ``Cancelled``): the last event of an action's list."""
        return self.get("EventList", "").lower() in _LIST_ENDS
