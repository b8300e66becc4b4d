"""The timeline schema (SQLAlchemy owns it; ``migrations/`` must match it exactly).

The table definitions live in ``tables.py`` and are loaded on first use of one of them, so
that the raw-driver call path (``fast_*``), which takes only the datetime helpers from here,
does not import SQLAlchemy: the classic per-call AGI script pays every import on every call
(bench/results.md). New code on that path: import the helpers from ``timestamps.py``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ivr_engine.timeline.timestamps import sqlite_timestamp, to_utc

if TYPE_CHECKING:
    from ivr_engine.timeline.tables import (
        NAMING_CONVENTION,
        AgentRosterMetaRow,
        AgentRosterRow,
        Base,
        BigId,
        CustomerRow,
        IdentityRow,
        JsonDocument,
        KnownFieldRow,
        TimelineEventRow,
        UtcDateTime,
        WebhookRelayRow,
        agent_roster,
        agent_roster_meta,
        customers,
        identities,
        known_fields,
        metadata,
        timeline_events,
        webhook_relay,
    )

__all__ = [
    "NAMING_CONVENTION",
    "AgentRosterMetaRow",
    "AgentRosterRow",
    "Base",
    "BigId",
    "CustomerRow",
    "IdentityRow",
    "JsonDocument",
    "KnownFieldRow",
    "TimelineEventRow",
    "UtcDateTime",
    "WebhookRelayRow",
    "agent_roster",
    "agent_roster_meta",
    "customers",
    "identities",
    "known_fields",
    "metadata",
    "sqlite_timestamp",
    "timeline_events",
    "to_utc",
    "webhook_relay",
]

if not TYPE_CHECKING:  # type checkers see the real names above, not an ``Any`` catch-all

    def __getattr__(name: str) -> Any:
        """PEP 562: the SQLAlchemy definitions, imported when first asked for."""
        if name not in __all__:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(import_module("ivr_engine.timeline.tables"), name)
        globals()[name] = value
        return value
