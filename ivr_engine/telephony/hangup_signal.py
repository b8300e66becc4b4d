"""Classic AGI's hangup signal: Asterisk sends ``SIGHUP`` when the caller hangs up (unless
``AGISIGHUP=no``). Its default action kills the process, and with it the call's record: a
caller who hangs up while the script still starts (imports, configuration, database) was
never recorded. ``catch_hangup`` is the script's first statement; the hangup is remembered
and the call is recorded as abandoned. Imports nothing but ``signal`` (cheap, first).
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Protocol


class HangupTarget(Protocol):
    def note_hangup(self) -> None: ...


class HangupSignal:
    """Marks the current channel hung up, or remembers the hangup for the next one."""

    def __init__(self) -> None:
        self.received = False
        self.channel: HangupTarget | None = None

    def __call__(self) -> None:
        self.received = True
        if self.channel is not None:
            self.channel.note_hangup()

    def attach(self, channel: HangupTarget) -> None:
        self.channel = channel
        if self.received:
            channel.note_hangup()


def catch_hangup() -> HangupSignal:
    """Take ``SIGHUP`` now (``signal.signal``: before any event loop); ``run_stdio_agi``
    moves the same ``HangupSignal`` to its loop's signal handler."""
    hangup = HangupSignal()

    def remember(_signum: int, _frame: FrameType | None) -> None:
        hangup()

    signal.signal(signal.SIGHUP, remember)
    return hangup
