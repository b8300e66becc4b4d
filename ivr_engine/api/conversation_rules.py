"""The pure rules of text-channel conversations (``routes_messages.py``): no I/O.

A conversation is a case: its events share a ``case_id``. A message's event id is
``msg:<channel>:<message_id>`` and a conversation created for a message gets an id derived
from that (``minted_conversation_id``), so a replay names the same one; ``replay_conflict``
tells a replay from a different message reusing the id.

``conversation_state``: each customer's part of the case is open, closed or aged out by the
menu ranking's rule (``personalize.cases.case_state``); the conversation is open while some
part is open, else aged out when some part went quiet without a close, else closed. The age
limit is the menus' ``open_case_max_age_days`` (``open_case_max_age``: the largest of the
menus in force, so "aged out" means no menu offers the case any more; the default without
menus). ``close_events`` closes each customer's part that is not closed yet (an aged-out
part too: the close records who ended it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from ivr_engine.api.schemas_messages import CloseIn, MessageIn, message_data
from ivr_engine.domain.models import Menu, RankingPolicy
from ivr_engine.personalize.cases import CASE_CLOSED, CaseState, case_state, recency
from ivr_engine.ports import CaseEventHead, NewTimelineEvent, StoredEvent

_CONVERSATION_NS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:ivr-engine:conversation")
_COMPARED_DATA = ("text", "subject", "from", "to", "agent_id")  # message_data, but the id
_SAME_TIME = timedelta(milliseconds=1)  # what the stores keep of a timestamp, at worst


def message_event_id(channel: str, message_id: str) -> str:
    return f"msg:{channel}:{message_id}"


def minted_conversation_id(event_id: str) -> str:
    """The conversation a message starts: derived, so every replay names the same one."""
    return str(uuid.uuid5(_CONVERSATION_NS, event_id))


def replay_conflict(body: MessageIn, stored: StoredEvent) -> str | None:
    """The first field in which a replay differs from the stored message, or None: every
    field that went into the event (``occurred_at`` only when given, to the millisecond the
    stores keep; the customer is compared by the caller, who can resolve merges)."""
    data = message_data(body)
    checks = (
        ("direction", stored.event_type == f"message.{body.direction}"),
        *((name, stored.data.get(name) == data[name]) for name in _COMPARED_DATA),
        ("intent", stored.intent == body.intent),
        ("conversation_id", body.conversation_id in (None, stored.case_id)),
        (
            "occurred_at",
            body.occurred_at is None or abs(stored.occurred_at - body.occurred_at) <= _SAME_TIME,
        ),
    )
    return next((name for name, same in checks if not same), None)


def case_customers(heads: Iterable[CaseEventHead]) -> list[str]:
    return sorted({h.customer_id for h in heads})


def _newest(heads: Iterable[CaseEventHead]) -> CaseEventHead:
    # as the ranking orders a case: by time, a close counting as newer at the same instant
    return max(heads, key=lambda h: (*recency(h.occurred_at, h.event_type), h.seq))


def _per_customer(heads: Iterable[CaseEventHead]) -> dict[str, list[CaseEventHead]]:
    grouped: dict[str, list[CaseEventHead]] = {}
    for head in heads:
        grouped.setdefault(head.customer_id, []).append(head)
    return grouped


def open_case_max_age(menus: Mapping[str, Menu]) -> float:
    """The age limit the conversation API applies: the largest ``open_case_max_age_days``
    of the menus in force (the default ranking policy's when there are none)."""
    ages = [menu.ranking.open_case_max_age_days for menu in menus.values()]
    return max(ages, default=RankingPolicy().open_case_max_age_days)


def conversation_state(
    heads: Iterable[CaseEventHead], now: datetime, max_age_days: float
) -> CaseState:
    """Open while some customer's part is open (the ranking reads each customer's history
    on its own), else aged out when some part is, else closed."""
    states = {
        case_state(newest.event_type, newest.occurred_at, now, max_age_days)
        for newest in map(_newest, _per_customer(heads).values())
    }
    return "open" if "open" in states else "aged_out" if "aged_out" in states else "closed"


def close_events(
    case_id: str, heads: Iterable[CaseEventHead], now: datetime, body: CloseIn
) -> list[NewTimelineEvent]:
    """One ``case.closed`` per customer whose part is not closed (open or aged out), timed
    no earlier than that part's newest event (so the ranking sees it as the newest); the id
    names the newest ``seq``, so a repeated close adds nothing and a close after new
    activity does."""
    events = []
    for customer_id, own in sorted(_per_customer(heads).items()):
        newest = _newest(own)
        if newest.event_type == CASE_CLOSED:
            continue
        last_seq = max(h.seq for h in own)
        events.append(
            NewTimelineEvent(
                event_id=f"{CASE_CLOSED}:{case_id}:{customer_id}:{last_seq}",
                customer_id=customer_id,
                occurred_at=max(now, newest.occurred_at),
                channel=newest.channel,
                event_type=CASE_CLOSED,
                case_id=case_id,
                data={"reason": body.reason, "agent_id": body.agent_id},
            )
        )
    return events


__all__ = [
    "case_customers",
    "close_events",
    "conversation_state",
    "message_event_id",
    "minted_conversation_id",
    "open_case_max_age",
    "replay_conflict",
]
