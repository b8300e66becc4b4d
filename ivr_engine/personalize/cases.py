"""When a case counts as open: the one rule of the menu ranking (``ranking.py``) and of the
conversation API (``api/conversation_rules.py``). Pure: ``now`` is a parameter.

A case is read per customer, from that customer's newest event of it (``recency``: by time,
a ``case.closed`` counting as the newer event at the same instant). It is closed when that
event is ``case.closed``, aged out when it is older than ``max_age_days`` (a menu's
``open_case_max_age_days``: a case nobody touched for that long counts as closed), else open.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ivr_engine.personalize._time import age_days, as_utc

CASE_CLOSED = "case.closed"
CaseState = Literal["open", "closed", "aged_out"]


def recency(occurred_at: datetime, event_type: str) -> tuple[datetime, bool]:
    """The start of a sort key, newest last: at the same instant a close is the newer event."""
    return as_utc(occurred_at), event_type == CASE_CLOSED


def case_state(
    newest_type: str, newest_at: datetime, now: datetime, max_age_days: float
) -> CaseState:
    """The state of one customer's part of a case, from its newest event."""
    if newest_type == CASE_CLOSED:
        return "closed"
    if age_days(newest_at, now) > max_age_days:
        return "aged_out"
    return "open"


__all__ = ["CASE_CLOSED", "CaseState", "case_state", "recency"]
