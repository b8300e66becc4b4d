"""The shared omnichannel customer timeline (SQLite embedded default, or PostgreSQL).

``open_timeline(url)`` gives the per-call ``lookup`` and ``writer`` (raw drivers, one round
trip) and the ``store`` (SQLAlchemy Core) for everything else; ``open_call_path(url)`` only
the lookup and the writer (the classic per-call AGI script: no SQLAlchemy import).

The names below are imported on first use (PEP 562), so that importing one light module of
this package (``call_path``, ``fast_lookup``, ``urls``...) does not import SQLAlchemy and
Alembic through this ``__init__``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ivr_engine.ports import CustomerWrite
from ivr_engine.timeline.errors import CustomerNotFound, MergeRejected, UnsupportedDatabaseUrl

if TYPE_CHECKING:
    from ivr_engine.timeline.call_path import CallPath, open_call_path
    from ivr_engine.timeline.fast_lookup import FastCallerLookup
    from ivr_engine.timeline.fast_writer import FastCallWriter
    from ivr_engine.timeline.opening import Timeline, open_timeline
    from ivr_engine.timeline.store import SqlTimelineStore

__all__ = [
    "CallPath",
    "CustomerNotFound",
    "CustomerWrite",
    "FastCallWriter",
    "FastCallerLookup",
    "MergeRejected",
    "SqlTimelineStore",
    "Timeline",
    "UnsupportedDatabaseUrl",
    "open_call_path",
    "open_timeline",
]

_LAZY = {
    "CallPath": "call_path",
    "open_call_path": "call_path",
    "FastCallerLookup": "fast_lookup",
    "FastCallWriter": "fast_writer",
    "SqlTimelineStore": "store",
    "Timeline": "opening",
    "open_timeline": "opening",
}

if not TYPE_CHECKING:  # type checkers see the real names above, not an ``Any`` catch-all

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
