"""Timeline routes: append an event (idempotent on ``event_id``) and page a timeline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from aiohttp import web

from ivr_engine.api.appending import APPENDER
from ivr_engine.api.errors import ApiError
from ivr_engine.api.field_rules import check_field_values
from ivr_engine.api.json_values import same_json
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
    ``event_id_conflict`` when the id is taken by a different event, or by an event of
    another customer (a client bug that would otherwise lose the second event without a
    word).

    Known fields are saved with the event, in its transaction, and kept with it
    (``saved_fields``), so a replay with other ``fields`` is a conflict too; a conflicting
    body saves nothing (also when its twin wins a race), and a true replay saves nothing
    either (its fields were saved with the event).
    """
    body = await parse_body(request, EventIn)
    now = request.app[CLOCK]()
    check_not_ahead(body.occurred_at, now)
    check_field_values(request.app[MENUS], body.fields, "fields")
    store = request.app[STORE]
    occurred_at = body.occurred_at or now
    fields = [KnownField(n, v, body.channel, occurred_at) for n, v in body.fields.items()]
    stored = await request.app[CONVERSATIONS].find_event(body.event_id)
    if stored is not None:  # before any customer is created: a conflict creates nothing
        return await _replayed(store, body, stored)
    appended = await _append(request, body, occurred_at, fields)
    if appended is None:  # a concurrent twin took the id first
        twin = await request.app[CONVERSATIONS].find_event(body.event_id)
        if twin is None:
            raise RuntimeError(f"event {body.event_id!r} neither inserted nor stored")
        return await _replayed(store, body, twin)
    customer_id, created = appended
    result: EventResultJson = {
        "inserted": True,
        "event_id": body.event_id,
        "customer_id": customer_id,
        "customer_created": created,
    }
    return web.json_response(result, status=201)


async def _append(
    request: web.Request, body: EventIn, occurred_at: datetime, fields: Sequence[KnownField]
) -> tuple[str, bool] | None:
    """Append the event with its fields: (customer_id, created), or None when the
    ``event_id`` is taken (nothing was written). When nobody owns the identity, its new
    customer is created in the event's transaction: a refused event leaves none behind."""

    def event_for(customer_id: str) -> NewTimelineEvent:
        return NewTimelineEvent(
            event_id=body.event_id,
            customer_id=customer_id,
            occurred_at=occurred_at,
            channel=body.channel,
            event_type=body.event_type,
            intent=body.intent,
            case_id=body.case_id,
            data=body.data,
        )

    appender = request.app[APPENDER]
    customer_id = body.customer_id
    if customer_id is None:
        assert body.identity is not None  # the model requires one of the two
        customer_id = await _owner(request.app[STORE], body.identity)
        if customer_id is None:
            identity = Identity(body.identity.kind, body.identity.value)
            return await appender.append_for_identity(identity, event_for, fields)
    if await appender.append_with_fields(event_for(customer_id), fields):
        return customer_id, False
    return None


@routes.get("/v1/customers/{id}/timeline")
async def get_timeline(request: web.Request) -> web.Response:
    customer_id = customer_id_param(request)
    query = parse_query(request, TimelineQuery)
    store = request.app[STORE]
    page = await store.timeline(customer_id, limit=query.limit, before_seq=query.before)
    return web.json_response(timeline_json(page))


async def _replayed(
    store: TimelineStore,
    body: EventIn,
    stored: StoredEvent,
) -> web.Response:
    """200 for a true replay of ``stored`` (nothing is written), else 409."""
    owner = await _survivor(store, stored.customer_id)
    differ = replay_differences(stored, body)
    if owner is None or not await _names_customer(store, body, owner):
        differ.insert(0, "customer_id" if body.customer_id is not None else "identity")
    if differ:
        raise ApiError(
            409,
            "event_id_conflict",
            f"event_id {body.event_id!r} is already stored with another "
            f"{', '.join(differ)}: a retry must send the same event; a new event needs a new id",
            extra={"differs": differ},
        )
    assert owner is not None
    result: EventResultJson = {
        "inserted": False,
        "event_id": body.event_id,
        "customer_id": owner,  # the survivor: merges move events
        "customer_created": False,  # a customer is only created with its event
    }
    return web.json_response(result, status=200)


async def _survivor(store: TimelineStore, customer_id: str) -> str | None:
    customer = await store.get_customer(customer_id)
    return None if customer is None else customer.merged_into or customer.customer_id


async def _names_customer(store: TimelineStore, body: EventIn, owner: str) -> bool:
    """Whether ``body`` names ``owner`` (its ``customer_id``, merged or not, or an owner of
    its ``identity``), found without creating anything."""
    if body.customer_id is not None:
        return await _survivor(store, body.customer_id) == owner
    assert body.identity is not None
    found = await store.find_customers(Identity(body.identity.kind, body.identity.value))
    return owner in {c.merged_into or c.customer_id for c in found}


def replay_differences(stored: StoredEvent, body: EventIn) -> list[str]:
    """What of the event ``body`` describes differs from the one stored under its id.

    The customer is compared by the caller (``_names_customer``: a merge moves events to
    the surviving customer, and a retry may name either), ``occurred_at`` only when the
    client gave one (else each try takes the server's clock), and ``fields`` as the event
    kept them (``saved_fields``; not for events stored before migration 0005)."""
    wanted = {
        "channel": body.channel,
        "event_type": body.event_type,
        "intent": body.intent,
        "case_id": body.case_id,
    }
    differ = [name for name, value in wanted.items() if getattr(stored, name) != value]
    if not same_json(stored.data, body.data):  # numbers as the backend keeps them
        differ.append("data")
    # None: stored by another writer, or before migration 0005 (nothing to compare with)
    if stored.saved_fields is not None and not same_json(stored.saved_fields, body.fields):
        differ.append("fields")
    if body.occurred_at is not None and abs(stored.occurred_at - body.occurred_at) > _SAME_TIME:
        differ.append("occurred_at")
    return differ


async def _owner(store: TimelineStore, given: IdentityIn) -> str | None:
    """The one customer owning ``given``; None when nobody does; 409 when ambiguous."""
    owners = await store.find_customers(Identity(given.kind, given.value))
    if len(owners) > 1:
        candidates = [c.customer_id for c in owners]
        raise ApiError(
            409,
            "ambiguous_identity",
            f"{given.kind} identity belongs to {len(owners)} customers; send customer_id "
            "or merge them first",
            extra={"candidate_ids": candidates},
        )
    return owners[0].customer_id if owners else None
