"""Time helpers for the pure core: no clock reads, ``now`` always comes from the caller."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_HOUR = 3600.0
_DAY = 86400.0


def as_utc(moment: datetime) -> datetime:
    """A naive datetime is taken to be UTC (the timeline stores UTC); aware ones are kept."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def age_days(moment: datetime, now: datetime) -> float:
    """Age in days, never negative (events slightly in the future count as 'now')."""
    return max((as_utc(now) - as_utc(moment)).total_seconds(), 0.0) / _DAY


def ago(moment: datetime, now: datetime) -> str:
    """'just now' (< 1 hour), '1 hour ago', 'N hours ago' (< 1 day), '1 day ago', 'N days ago'.

    Whole units, rounded down, so the text is a deterministic function of both times.
    """
    seconds = max((as_utc(now) - as_utc(moment)).total_seconds(), 0.0)
    if seconds < _HOUR:
        return "just now"
    if seconds < _DAY:
        return _plural(int(seconds // _HOUR), "hour") + " ago"
    return _plural(int(seconds // _DAY), "day") + " ago"


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def window_start(now: datetime, max_age_days: float) -> datetime:
    """The oldest moment still inside a ``max_age_days`` window (clamped to datetime.min)."""
    try:
        return as_utc(now) - timedelta(days=max_age_days)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)
