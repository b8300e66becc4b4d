"""Timeline routes: append an event (idempotent on ``event_id``) and page a timeline."""

from __future__ import annotations

from aiohttp import web

from ivr_engine.api.appending import APPENDER
from ivr_engine.api.errors import ApiError
from ivr_engine.api.field_rules import check_field_values
from ivr_engine.api.keys import CLOCK, MENUS, STORE
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
from ivr_engine.ports import Identity, NewTimelineEvent, TimelineStore

routes = web.RouteTableDef()


@routes.post("/v1/events")
async def post_event(request: web.Request) -> web.Response:
    """201 ``inserted: true`` the first time, 200 ``inserted: false`` on a replay.

    Known fields are saved before the event: a client retrying after a failure between
    the two writes still gets them stored (re-saving the same value is harmless).
    """
    body = await parse_body(request, EventIn)
    now = request.app[CLOCK]()
    check_not_ahead(body.occurred_at, now)
    check_field_values(request.app[MENUS], body.fields, "fields")
    store = request.app[STORE]
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
