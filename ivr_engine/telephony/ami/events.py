"""Event subscriptions with bounded queues, and typed access to common event fields.

A ``Subscription`` receives, in wire order, every event whose name matches one of its glob
patterns (case-insensitive; none = all events) and for which ``where(event)`` is true. The
client offers each event without ever waiting on a subscriber: if ``maxsize`` events are
already waiting, delivery to that subscriber stops there. The consumer still gets the queued
events, in order, then ``SubscriptionOverflow``: a slow consumer costs at most ``maxsize``
events of memory and learns exactly where its gap starts, instead of silently missing events.

After a reconnect the subscription goes on; Asterisk sends ``FullyBooted`` after each login,
so a consumer that keeps state can resynchronise when it sees one.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from types import TracebackType

from ivr_engine.telephony.ami.errors import (
    AmiError,
    SubscriptionFilterError,
    SubscriptionOverflow,
)
from ivr_engine.telephony.ami.messages import AmiEvent, AmiMessage

log = logging.getLogger(__name__)

EventFilter = Callable[[AmiEvent], bool]
DEFAULT_MAXSIZE = 1000


class Subscription:
    """An async iterator of events; see the module docstring. ``close()`` unsubscribes."""

    def __init__(
        self,
        patterns: Iterable[str] = (),
        *,
        where: EventFilter | None = None,
        maxsize: int = DEFAULT_MAXSIZE,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"subscription maxsize must be >= 1, got {maxsize}")
        self.patterns = tuple(patterns)
        self.maxsize = maxsize
        self._regex = (
            re.compile("|".join(fnmatch.translate(p) for p in self.patterns), re.IGNORECASE)
            if self.patterns
            else None
        )
        self._where = where
        self._on_close = on_close
        self._items: deque[AmiEvent] = deque()
        self._wakeup = asyncio.Event()
        self._ended = False
        self._error: AmiError | None = None  # raised once the queue is drained

    @property
    def ended(self) -> bool:
        """No more events will be queued (closed, overflowed, filter failed, client closed)."""
        return self._ended

    def __repr__(self) -> str:
        return f"<Subscription patterns={self.patterns!r} maxsize={self.maxsize}>"

    def pending(self) -> int:
        return len(self._items)

    def matches(self, event: AmiEvent) -> bool:
        if self._regex is not None and not self._regex.fullmatch(event.name):
            return False
        return self._where is None or self._where(event)

    def offer(self, event: AmiEvent) -> None:
        """Queue the event if it matches; never blocks (called by the client's reader)."""
        if self._ended:
            return
        try:
            wanted = self.matches(event)
        except Exception as exc:
            failure = SubscriptionFilterError(
                f"subscription filter raised on {event.name}: {exc!r}"
            )
            failure.__cause__ = exc
            self.end(failure)
            return
        if not wanted:
            return
        if len(self._items) >= self.maxsize:
            log.warning("AMI subscriber %r overflowed at %d events: ending it", self, self.maxsize)
            self.end(SubscriptionOverflow(self.maxsize))
            return
        self._items.append(event)
        self._wakeup.set()

    def end(self, error: AmiError | None = None) -> None:
        """Stop queueing; after the queued events, iteration stops (or raises ``error``)."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._wakeup.set()
        if self._on_close is not None:
            self._on_close(self)

    def close(self) -> None:
        """Unsubscribe and drop what is queued; iteration stops at once."""
        self._items.clear()
        self.end()

    def take(self, limit: int) -> list[AmiEvent]:
        """Up to ``limit`` events already queued, in order, without waiting (``get`` raises
        the end of the subscription once they are drained)."""
        items = self._items
        return [items.popleft() for _ in range(min(limit, len(items)))]

    async def get(self) -> AmiEvent:
        """The next event; ``StopAsyncIteration`` once ended and drained, or the end error."""
        while not self._items:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._items.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> AmiEvent:
        return await self.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- typed access to common fields ---------------------------------------------------------


class ChannelState(IntEnum):
    """Asterisk's ``ChannelState`` numbers (``ChannelStateDesc`` gives the words)."""

    DOWN = 0
    RESERVED = 1
    OFFHOOK = 2
    DIALING = 3
    RING = 4
    RINGING = 5
    UP = 6
    BUSY = 7
    DIALING_OFFHOOK = 8
    PRERING = 9


def int_header(message: AmiMessage, key: str) -> int | None:
    """A header as an int; None when missing or not a number (AMI values are free text)."""
    value = message.get(key)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ChannelSnapshot:
    """The channel block of an event (``Newchannel``, ``Hangup``, ``CoreShowChannel`` ...);
    ``prefix`` selects a second channel's block, e.g. ``Dest`` in ``DialBegin``."""

    channel: str
    uniqueid: str
    linkedid: str
    state: ChannelState | None
    state_desc: str
    caller_id_num: str
    caller_id_name: str
    context: str
    exten: str
    priority: int | None


def _channel_state(number: int | None) -> ChannelState | None:
    try:
        return None if number is None else ChannelState(number)
    except ValueError:
        return None


def channel_snapshot(event: AmiMessage, prefix: str = "") -> ChannelSnapshot | None:
    """None if the event has no ``<prefix>Channel`` header."""
    channel = event.get(f"{prefix}Channel")
    if channel is None:
        return None
    return ChannelSnapshot(
        channel=channel,
        uniqueid=event.get(f"{prefix}Uniqueid", ""),
        linkedid=event.get(f"{prefix}Linkedid", ""),
        state=_channel_state(int_header(event, f"{prefix}ChannelState")),
        state_desc=event.get(f"{prefix}ChannelStateDesc", ""),
        caller_id_num=event.get(f"{prefix}CallerIDNum", ""),
        caller_id_name=event.get(f"{prefix}CallerIDName", ""),
        context=event.get(f"{prefix}Context", ""),
        exten=event.get(f"{prefix}Exten", ""),
        priority=int_header(event, f"{prefix}Priority"),
    )


def chan_variables(event: AmiMessage, prefix: str = "") -> dict[str, str]:
    """The repeated ``<prefix>ChanVariable: NAME=value`` headers (manager.conf
    ``channelvars``) as a dict; a later duplicate name wins, a line without ``=`` is empty."""
    variables: dict[str, str] = {}
    for line in event.get_all(f"{prefix}ChanVariable"):
        name, _, value = line.partition("=")
        variables[name] = value
    return variables


@dataclass(frozen=True, slots=True)
class HangupInfo:
    channel: str
    uniqueid: str
    cause: int | None  # Q.850 cause, e.g. 16 normal clearing
    cause_txt: str


def hangup_info(event: AmiEvent) -> HangupInfo | None:
    """The fields of a ``Hangup`` event; None for any other event."""
    if event.name.lower() != "hangup":
        return None
    return HangupInfo(
        channel=event.get("Channel", ""),
        uniqueid=event.get("Uniqueid", ""),
        cause=int_header(event, "Cause"),
        cause_txt=event.get("Cause-txt", ""),
    )


def user_event_name(event: AmiEvent) -> str | None:
    """``UserEvent(IvrRouted,...)`` in the dialplan → ``"IvrRouted"``; None otherwise."""
    if event.name.lower() != "userevent":
        return None
    return event.get("UserEvent")
