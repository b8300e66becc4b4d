"""Text channels (chat, e-mail, SMS, messenger): messages and conversations on the timeline.

A message is one timeline event, ``message.inbound`` or ``message.outbound``, whose
``case_id`` is the conversation id: a conversation *is* a case, so a call or any event
posted to ``/v1/events`` with the same ``case_id`` joins the thread. Closing appends
``case.closed``, the event type the menu ranking (``personalize.ranking``) reads as "this
case is no longer open"; any later event of the case opens it again.

Whose message it is (never a silent wrong merge):

* inbound: ``customer_id`` if given, else the one owner of the sender's identity, a new
  customer if nobody owns it, 409 ``ambiguous_identity`` if several do (merge them first);
* outbound: ``customer_id`` if given, else the conversation's customer;
* a conversation that already has events takes messages of its own customers only
  (409 ``conversation_mismatch``).

Idempotency: the event id is ``msg:<channel>:<message_id>``; a conversation created for a
message gets an id derived from that, so a replay (even a concurrent one) answers the same
customer and conversation; a replay whose content differs is 409 ``message_id_conflict``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

from aiohttp import web

from ivr_engine.api.appending import APPENDER
from ivr_engine.api.errors import ApiError
from ivr_engine.api.keys import CLOCK, STORE
from ivr_engine.api.schemas import parse_body, parse_query
from ivr_engine.api.schemas_messages import (
    CHANNEL_IDENTITY,
    CloseIn,
    CloseResultJson,
    ConversationJson,
    ConversationQuery,
    MessageIn,
    MessageResultJson,
    check_message,
    message_data,
)
from ivr_engine.api.serialize import event_json
from ivr_engine.personalize.ranking import CASE_CLOSED
from ivr_engine.ports import (
    MAX_CASE_EVENTS,
    CaseEventHead,
    ConversationPage,
    ConversationReader,
    Identity,
    NewTimelineEvent,
    StoredEvent,
    TimelineStore,
)

__all__ = [  # the case types live in ``ivr_engine.ports``, re-exported here for callers
    "CONVERSATIONS",
    "MAX_CASE_EVENTS",
    "CaseEventHead",
    "ConversationPage",
    "ConversationReader",
    "case_customers",
    "close_events",
    "conversation_id_param",
    "conversation_reader_for",
    "install",
    "is_open",
    "message_event_id",
    "minted_conversation_id",
    "replay_conflict",
    "routes",
]
_CASE_ID_RE: Final = re.compile(r"^[\x21-\x7e]{1,64}$")  # schemas.CaseId
_CONVERSATION_NS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:ivr-engine:conversation")


CONVERSATIONS = web.AppKey[ConversationReader]("conversations")
routes = web.RouteTableDef()


def install(app: web.Application, reader: ConversationReader | None = None) -> None:
    """Register the message routes; ``reader`` defaults to one over ``app[STORE]``."""
    app[CONVERSATIONS] = reader if reader is not None else conversation_reader_for(app[STORE])
    app.add_routes(routes)


# --------------------------------------------------------------------------- handlers


@routes.post("/v1/messages")
async def post_message(request: web.Request) -> web.Response:
    """201 ``inserted: true`` the first time, 200 ``inserted: false`` on a replay."""
    body = await parse_body(request, MessageIn)
    now = request.app[CLOCK]()
    check_message(body, now)
    store, reader = request.app[STORE], request.app[CONVERSATIONS]
    event_id = message_event_id(body.channel, body.message_id)
    stored = await reader.find_event(event_id)
    if stored is not None:
        return _replayed(body, stored)
    heads = await reader.case_heads(body.conversation_id) if body.conversation_id else ()
    customer_id, created = await _message_customer(store, body, heads)
    conversation_id = body.conversation_id or minted_conversation_id(event_id)
    event = NewTimelineEvent(
        event_id=event_id,
        customer_id=customer_id,
        occurred_at=body.occurred_at or now,
        channel=body.channel,
        event_type=f"message.{body.direction}",
        intent=body.intent,
        case_id=conversation_id,
        data=message_data(body),
    )
    if await request.app[APPENDER].append([event]) == 0:  # a concurrent twin was first
        twin = await reader.find_event(event_id)
        if twin is None:
            raise RuntimeError(f"event {event_id!r} neither inserted nor stored")
        return _replayed(body, twin)
    result: MessageResultJson = {
        "inserted": True,
        "message_id": body.message_id,
        "event_id": event_id,
        "customer_id": customer_id,
        "customer_created": created,
        "conversation_id": conversation_id,
        "conversation_created": not heads,
    }
    return web.json_response(result, status=201)


@routes.get("/v1/conversations/{id}")
async def get_conversation(request: web.Request) -> web.Response:
    case_id = conversation_id_param(request)
    query = parse_query(request, ConversationQuery)
    reader = request.app[CONVERSATIONS]
    heads = await _existing_case(reader, case_id)
    page = await reader.conversation(case_id, limit=query.limit, after_seq=query.after)
    result: ConversationJson = {
        "conversation_id": case_id,
        "open": is_open(heads),
        "customer_ids": case_customers(heads),
        "events": [event_json(e) for e in page.events],
        "next_after": page.next_after,
    }
    return web.json_response(result)


@routes.post("/v1/conversations/{id}/close")
async def close_conversation(request: web.Request) -> web.Response:
    """Appends ``case.closed`` for each customer whose part of the case is still open.

    201 when something was appended, 200 when it was already closed. The body is optional.
    """
    case_id = conversation_id_param(request)
    body = await parse_body(request, CloseIn) if request.body_exists else CloseIn()
    heads = await _existing_case(request.app[CONVERSATIONS], case_id)
    events = close_events(case_id, heads, request.app[CLOCK](), body)
    inserted = bool(events) and await request.app[APPENDER].append(events) > 0
    result: CloseResultJson = {
        "conversation_id": case_id,
        "closed": True,
        "inserted": inserted,
        "customer_ids": case_customers(heads),
    }
    return web.json_response(result, status=201 if inserted else 200)


# --------------------------------------------------------------------------- resolution


async def _message_customer(
    store: TimelineStore, body: MessageIn, heads: Sequence[CaseEventHead]
) -> tuple[str, bool]:
    """The customer a new message belongs to, and whether it was created for it."""
    members = case_customers(heads)
    if body.customer_id is not None:
        customer_id, created = await _survivor(store, body.customer_id), False
    elif body.direction == "outbound":
        return _conversation_customer(body.conversation_id, members), False
    else:
        assert body.customer_address is not None  # check_message
        identity = Identity(CHANNEL_IDENTITY[body.channel], body.customer_address)
        customer_id, created = await _sender(store, identity, members)
    if members and customer_id not in members:
        raise _mismatch(customer_id, members)
    return customer_id, created


async def _sender(
    store: TimelineStore, identity: Identity, members: Sequence[str]
) -> tuple[str, bool]:
    owners = await store.find_customers(identity)
    if len(owners) > 1:
        raise ApiError(
            409,
            "ambiguous_identity",
            f"{identity.kind} identity belongs to {len(owners)} customers; send customer_id "
            "or merge them first",
            extra={"candidate_ids": [c.customer_id for c in owners]},
        )
    if owners:
        return owners[0].customer_id, False
    if members:  # a stranger writing into someone's conversation: do not create
        raise _mismatch(None, members)
    return await store.create_customer_for_identity(identity), True


async def _survivor(store: TimelineStore, customer_id: str) -> str:
    customer = await store.get_customer(customer_id)
    if customer is None:
        raise ApiError(404, "customer_not_found", "customer not found")
    return customer.merged_into or customer.customer_id


def _conversation_customer(conversation_id: str | None, members: Sequence[str]) -> str:
    if not members:
        raise ApiError(
            404,
            "conversation_not_found",
            f"conversation {conversation_id!r} has no events; name customer_id to start one",
        )
    if len(members) > 1:
        raise ApiError(
            409,
            "ambiguous_conversation",
            f"the conversation has {len(members)} customers; send customer_id",
            extra={"candidate_ids": list(members)},
        )
    return members[0]


def _mismatch(customer_id: str | None, members: Sequence[str]) -> ApiError:
    if customer_id is None:
        who = "the sender's identity is nobody's yet"
    else:
        who = f"customer {customer_id!r} is not in it"
    return ApiError(
        409,
        "conversation_mismatch",
        f"the conversation belongs to other customers ({who}); send customer_id, add the "
        "identity to the customer, or merge",
        extra={"customer_ids": list(members)},
    )


def _replayed(body: MessageIn, stored: StoredEvent) -> web.Response:
    differs = replay_conflict(body, stored)
    if differs is not None or stored.case_id is None:
        raise ApiError(
            409,
            "message_id_conflict",
            f"message_id {body.message_id!r} was already used for a different message "
            f"({differs or 'conversation_id'} differs)",
        )
    result: MessageResultJson = {
        "inserted": False,
        "message_id": body.message_id,
        "event_id": stored.event_id,
        "customer_id": stored.customer_id,  # the survivor: merges move events
        "customer_created": False,
        "conversation_id": stored.case_id,
        "conversation_created": False,
    }
    return web.json_response(result, status=200)


# --------------------------------------------------------------------------- pure rules


def message_event_id(channel: str, message_id: str) -> str:
    return f"msg:{channel}:{message_id}"


def minted_conversation_id(event_id: str) -> str:
    """The conversation a message starts: derived, so every replay names the same one."""
    return str(uuid.uuid5(_CONVERSATION_NS, event_id))


def replay_conflict(body: MessageIn, stored: StoredEvent) -> str | None:
    """The first field in which a replay differs from the stored message, or None."""
    side = "from" if body.direction == "inbound" else "to"
    checks = (
        ("direction", stored.event_type == f"message.{body.direction}"),
        ("text", stored.data.get("text") == body.text),
        ("subject", stored.data.get("subject") == body.subject),
        (side, stored.data.get(side) == body.customer_address),
        ("conversation_id", body.conversation_id in (None, stored.case_id)),
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


def conversation_id_param(request: web.Request) -> str:
    """The conversation id in the path; a malformed one cannot exist, so it is a 404."""
    value = request.match_info["id"]
    if not _CASE_ID_RE.fullmatch(value):
        raise _no_conversation()
    return value


async def _existing_case(reader: ConversationReader, case_id: str) -> tuple[CaseEventHead, ...]:
    heads = await reader.case_heads(case_id)
    if not heads:
        raise _no_conversation()
    return heads


def _no_conversation() -> ApiError:
    return ApiError(404, "conversation_not_found", "conversation not found")


# --------------------------------------------------------------------------- wiring


def conversation_reader_for(store: TimelineStore) -> ConversationReader:
    """The store itself: ``SqlTimelineStore`` reads cases (``ivr_engine.ports``)."""
    if isinstance(store, ConversationReader):
        return store
    raise TypeError(f"{type(store).__name__} cannot read conversations")
