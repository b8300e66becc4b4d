"""Text channels (chat, e-mail, SMS, messenger): messages and conversations on the timeline.

A message is one timeline event, ``message.inbound`` or ``message.outbound``, whose
``case_id`` is the conversation id: a conversation *is* a case, so a call or any event
posted to ``/v1/events`` with the same ``case_id`` joins the thread. Closing appends
``case.closed``, the event type the menu ranking (``personalize.ranking``) reads as "this
case is no longer open"; any later event of the case opens it again. A conversation quiet
for longer than the menus' ``open_case_max_age_days`` is shown as the ranking treats it:
not open, ``state: "aged_out"`` (read from ``app[MENUS]`` at each request, so a menu
reload changes it at once).

Whose message it is (never a silent wrong merge) is decided in ``message_customers.py``;
the pure case rules (ids, open or closed, closing) are in ``conversation_rules.py``.

Idempotency: the event id is ``msg:<channel>:<message_id>``; a conversation created for a
message gets an id derived from that, so a replay (even a concurrent one) answers the same
customer and conversation; a replay whose content differs is 409 ``message_id_conflict``.
``customer_created`` and ``conversation_created`` say what the request itself created, as
on ``POST /v1/events``: true only in the answer to the request that stored the message. A
new sender's customer is created in the message's transaction (a refused message leaves
no empty customer), so a replay, concurrent or later, created nothing and says ``false``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from aiohttp import web

from ivr_engine.api.appending import APPENDER, Appender
from ivr_engine.api.conversation_rules import (
    case_customers,
    close_events,
    conversation_state,
    message_event_id,
    minted_conversation_id,
    open_case_max_age,
    replay_conflict,
)
from ivr_engine.api.errors import ApiError
from ivr_engine.api.keys import CLOCK, CONVERSATIONS, MENUS, STORE
from ivr_engine.api.message_customers import message_customer
from ivr_engine.api.schemas import parse_body, parse_query
from ivr_engine.api.schemas_messages import (
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
    "conversation_id_param",
    "conversation_reader_for",
    "install",
    "routes",
]
_CASE_ID_RE: Final = re.compile(r"^[\x21-\x7e]{1,64}$")  # schemas.CaseId


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
        return await _replayed(store, body, stored)
    heads = await reader.case_heads(body.conversation_id) if body.conversation_id else ()
    owner = await message_customer(store, body, heads)
    conversation_id = body.conversation_id or minted_conversation_id(event_id)

    def event_for(customer_id: str) -> NewTimelineEvent:
        return NewTimelineEvent(
            event_id=event_id,
            customer_id=customer_id,
            occurred_at=body.occurred_at or now,
            channel=body.channel,
            event_type=f"message.{body.direction}",
            intent=body.intent,
            case_id=conversation_id,
            data=message_data(body),
        )

    appended = await _append(request.app[APPENDER], owner, event_for)
    if appended is None:  # a concurrent twin was first
        twin = await reader.find_event(event_id)
        if twin is None:
            raise RuntimeError(f"event {event_id!r} neither inserted nor stored")
        return await _replayed(store, body, twin)
    customer_id, created = appended
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
    max_age = open_case_max_age(request.app[MENUS])
    state = conversation_state(heads, request.app[CLOCK](), max_age)
    result: ConversationJson = {
        "conversation_id": case_id,
        "open": state == "open",
        "state": state,
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


# --------------------------------------------------------------------------- helpers


async def _append(
    appender: Appender, owner: str | Identity, event_for: Callable[[str], NewTimelineEvent]
) -> tuple[str, bool] | None:
    """(customer_id, created), or None when the event id is taken (nothing was written).
    A sender nobody owns gets a customer in the message's transaction, or none at all."""
    if isinstance(owner, Identity):
        return await appender.append_for_identity(owner, event_for)
    return (owner, False) if await appender.append([event_for(owner)]) else None


async def _replayed(store: TimelineStore, body: MessageIn, stored: StoredEvent) -> web.Response:
    """200 for a true replay of ``stored``, else 409 (a replay created nothing)."""
    differs = replay_conflict(body, stored)
    if differs is None and body.customer_id is not None:
        owner = await _survivor_or_none(store, stored.customer_id)
        if owner is None or await _survivor_or_none(store, body.customer_id) != owner:
            differs = "customer_id"  # compared by survivor: a merge moves the event
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


async def _survivor_or_none(store: TimelineStore, customer_id: str) -> str | None:
    customer = await store.get_customer(customer_id)
    return None if customer is None else customer.merged_into or customer.customer_id


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
