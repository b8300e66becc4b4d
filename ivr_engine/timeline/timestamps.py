"""How the timeline stores datetimes, without SQLAlchemy (the raw-driver paths use it too).

Timezone-aware UTC everywhere: on PostgreSQL ``timestamptz``; on SQLite fixed-width UTC
text ``YYYY-MM-DD HH:MM:SS.ffffff`` (sorts chronologically).
"""

from __future__ import annotations

from datetime import UTC, datetime


def sqlite_timestamp(value: datetime) -> str:
    """The SQLite storage text of an aware datetime (what SQLAlchemy writes, too)."""
    return to_utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")


def to_utc(value: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
