"""Domain errors shared by every layer.

A caller hanging up is a normal end of a call, not a failure: it is its own type so the
call pipeline can record it as ``abandoned`` without treating it as an error.
"""

from __future__ import annotations


class IvrEngineError(Exception):
    """Base class for errors raised by the engine."""


class CallerHungUp(IvrEngineError):
    """The caller's channel went away (AGI ``HANGUP``, ``511``, EOF on the socket)."""


class ChannelError(IvrEngineError):
    """The telephony peer refused a command (bad syntax, usage error, invalid command)."""


class RecordingFailed(ChannelError):
    """The switch could not record the caller (cannot write the file, cannot record on this
    switch): the caller is still there, the flow goes on as if nothing was said."""


class TimelineUnavailable(IvrEngineError):
    """The timeline store could not answer (down, slow, or refused the query)."""


class TimelineDataRejected(TimelineUnavailable):
    """The database refused the data itself (a value it cannot store: a NUL in text, a
    too long id, a broken constraint): retrying the same write fails the same way, so the
    write that carries it is set aside rather than retried; the database is up."""


class ConfigError(IvrEngineError):
    """Configuration is invalid; the message names the file, the key and the fix."""


class CustomerNotFound(IvrEngineError, LookupError):
    """No customer has this id."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"customer {customer_id!r} does not exist")
        self.customer_id = customer_id
