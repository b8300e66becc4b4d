"""Timeline routes: append an event (idempotent on ``event_id``) and page a timeline."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from ivr_engine.api.appending import APPENDER
from ivr_engine.api.errors import ApiError
from ivr_engine.api.field_rules import check_field_values
from ivr_engine.api.keys import CLOCK, CONVERSATIONS, MENUS, STORE
from ivr_engine.api.schemas import (
    EventIn,
    IdentityIn,
    TimelineQuery,
    check_not_ahead,
    customer_id_param,
    parse_body,
    parse_query,
)
from ivr_engine.api.serialize import EventResultJson, timeline_json
from ivr_engine.domain.models import KnownField
from ivr_engine.ports import (
    ConversationReader,
    Identity,
    NewTimelineEvent,
    StoredEvent,
    TimelineStore,
)

routes = web.RouteTableDef()
_SAME_TIME = timedelta(milliseconds=1)  # what the stores keep of a timestamp, at worst


@routes.post("/v1/events")
async def post_event(request: web.Request) -> web.Response:
    """201 ``inserted: true`` the first time, 200 ``inserted: false`` on a replay, 409
    ``event_id_conflict`` when the id is taken by a different event (a client bug that
    would otherwise lose the second event without a word).

    Known fields are saved before the event: a client retrying after a failure between
    the two writes still gets them stored (re-saving the same value is harmless).
    """
    body = await parse_body(request, EventIn)
    now = request.app[CLOCK]()
    check_not_ahead(body.occurred_at, now)
    check_field_values(request.app[MENUS], body.fields, "fields")
    store = request.app[STORE]
    reader = request.app[CONVERSATIONS]
    await _check_replay(reader, body)  # before the fields: a conflicting body saves nothing
    if body.customer_id is not None:
        customer_id, created = body.customer_id, False
    else:
        assert body.identity is not None  # the model requires one of the two
        customer_id, created = await _resolve(store, body.identity)
    occurred_at = body.occurred_at or now
    fields = [KnownField(n, v, body.channel, occurred_at) for n, v in body.fields.items()]
    await store.save_known_fields(customer_id, fields)
    event = NewTimelineEvent(
        event_id=body.event_id,
        customer_id=customer_id,
        occurred_at=occurred_at,
        channel=body.channel,
        event_type=body.event_type,
        intent=body.intent,
        case_id=body.case_id,
        data=body.data,
    )
    inserted = await request.app[APPENDER].append([event]) > 0
    if not inserted:
        await _check_replay(reader, body)  # another request took the id in between
    result: EventResultJson = {
        "inserted": inserted,
        "event_id": body.event_id,
        "customer_id": customer_id,
        "customer_created": created,
    }
    return web.json_response(result, status=201 if inserted else 200)


@routes.get("/v1/customers/{id}/timeline")
async def get_timeline(request: web.Request) -> web.Response:
    customer_id = customer_id_param(request)
    query = parse_query(request, TimelineQuery)
    store = request.app[STORE]
    page = await store.timeline(customer_id, limit=query.limit, before_seq=query.before)
    return web.json_response(timeline_json(page))


async def _check_replay(reader: ConversationReader, body: EventIn) -> None:
    """409 when ``body.event_id`` is stored with other content (a true replay passes)."""
    stored = await reader.find_event(body.event_id)
    if stored is None:
        return
    differ = replay_differences(stored, body)
    if differ:
        raise ApiError(
            409,
            "event_id_conflict",
            f"event_id {body.event_id!r} is already stored with another "
            f"{', '.join(differ)}: a retry must send the same event; a new event needs a new id",
            extra={"differs": differ},
        )


def replay_differences(stored: StoredEvent, body: EventIn) -> list[str]:
    """What of the event ``body`` describes differs from the one stored under its id.

    The customer is left out (a merge moves events to the surviving customer, and a retry
    may name either), and ``occurred_at`` is compared only when the client gave one (else
    each try takes the server's clock)."""
    wanted = {
        "channel": body.channel,
        "event_type": body.event_type,
        "intent": body.intent,
        "case_id": body.case_id,
        "data": body.data,
    }
    differ = [name for name, value in wanted.items() if getattr(stored, name) != value]
    if body.occurred_at is not None and abs(stored.occurred_at - body.occurred_at) > _SAME_TIME:
        differ.append("occurred_at")
    return differ


async def _resolve(store: TimelineStore, given: IdentityIn) -> tuple[str, bool]:
    """The one customer owning ``given`` (created when nobody does); 409 when ambiguous."""
    identity = Identity(given.kind, given.value)
    owners = await store.find_customers(identity)
    if len(owners) > 1:
        candidates = [c.customer_id for c in owners]
        raise ApiError(
            409,
            "ambiguous_identity",
            f"{identity.kind} identity belongs to {len(owners)} customers; send customer_id "
            "or merge them first",
            extra={"candidate_ids": candidates},
        )
    if owners:
        return owners[0].customer_id, False
    return await store.create_customer_for_identity(identity), True
