"""Errors raised by the event bus.

``BusUnavailable`` is the peer-outage error (Redis down, slow, or refusing a command): a
publisher keeps its events (spool, retry later: consumers dedupe by ``event_id``) and a
consumer's supervisor restarts ``consume`` after a back-off. ``BusClosed`` means this bus
object was closed; a caller that sees it is shutting down. Invalid events, names and settings
are ``ValueError``/``TypeError`` raised before anything is sent.
"""

from __future__ import annotations

from ivr_engine.domain.errors import IvrEngineError

__all__ = ["BusClosed", "BusError", "BusUnavailable", "PartitionCountMismatch"]


class BusError(IvrEngineError):
    """Base class for event bus errors."""


class BusUnavailable(BusError):
    """The bus backend could not answer (down, timed out, or refused the command)."""


class BusClosed(BusError):
    """The bus was closed (``aclose``); no more publishing, consuming or acknowledging."""


class PartitionCountMismatch(BusError):
    """This process and the stream disagree on the number of partitions.

    Changing the count re-maps partition keys to other partitions (and breaks ordering), so
    it is refused: configure the same ``partitions`` everywhere, or use a new stream name.
    """

    def __init__(self, stream: str, configured: int, stored: int) -> None:
        super().__init__(
            f"stream {stream!r} has {stored} partitions but this bus is configured with "
            f"{configured}: set BusSettings(partitions={stored}) or publish to a new stream"
        )
        self.stream = stream
        self.configured = configured
        self.stored = stored
