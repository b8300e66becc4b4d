"""The pure rules of text-channel conversations (``routes_messages.py``): no I/O.

A conversation is a case: its events share a ``case_id``. A message's event id is
``msg:<channel>:<message_id>`` and a conversation created for a message gets an id derived
from that (``minted_conversation_id``), so a replay names the same one; ``replay_conflict``
tells a replay from a different message reusing the id. A case is open while some
customer's newest event of it is not ``case.closed`` (the menu ranking's rule,
``personalize.ranking``); ``close_events`` closes each customer's open part.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from ivr_engine.api.schemas_messages import CloseIn, MessageIn, message_data
from ivr_engine.personalize.ranking import CASE_CLOSED
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
    return max(heads, key=lambda h: (h.occurred_at, h.event_type == CASE_CLOSED, h.seq))


def _per_customer(heads: Iterable[CaseEventHead]) -> dict[str, list[CaseEventHead]]:
    grouped: dict[str, list[CaseEventHead]] = {}
    for head in heads:
        grouped.setdefault(head.customer_id, []).append(head)
    return grouped


def is_open(heads: Iterable[CaseEventHead]) -> bool:
    """Open while some customer's newest event of the case is not a close (the ranking's
    rule, which reads each customer's history on its own)."""
    return any(_newest(h).event_type != CASE_CLOSED for h in _per_customer(heads).values())


def close_events(
    case_id: str, heads: Iterable[CaseEventHead], now: datetime, body: CloseIn
) -> list[NewTimelineEvent]:
    """One ``case.closed`` per customer whose part is open, timed no earlier than that
    part's newest event (so the ranking sees it as the newest); the id names the newest
    ``seq``, so a repeated close adds nothing and a close after new activity does."""
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
    "is_open",
    "message_event_id",
    "minted_conversation_id",
    "replay_conflict",
]
