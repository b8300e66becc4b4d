"""Errors raised by the timeline adapters (on top of ``TimelineUnavailable``)."""

from __future__ import annotations

from ivr_engine.domain.errors import ConfigError, CustomerNotFound, IvrEngineError

__all__ = ["CustomerNotFound", "MergeRejected", "UnsupportedDatabaseUrl"]


class MergeRejected(IvrEngineError, ValueError):
    """A merge that cannot be done: same customer, or one side was already merged away."""


class UnsupportedDatabaseUrl(ConfigError, ValueError):
    """``database_url`` is neither ``sqlite:///PATH`` nor ``postgresql://...``."""
