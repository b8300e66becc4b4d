"""Customer routes: create, read, rename, identities, lookup, merge, known fields.

Handlers stay thin: validate (``schemas``) → one store call → serialise (``serialize``).
Store errors (``CustomerNotFound``, ``MergeRejected``, ``TimelineUnavailable``) become JSON
errors in the middleware.
"""

from __future__ import annotations

from aiohttp import web

from ivr_engine.api.errors import ApiError
from ivr_engine.api.field_rules import check_field_value, check_field_values
from ivr_engine.api.keys import CLOCK, MENUS, STORE
from ivr_engine.api.schemas import (
    CreateCustomer,
    IdentityIn,
    LookupQuery,
    MergeRequest,
    PutField,
    UpdateCustomer,
    customer_id_param,
    field_name_param,
    parse_body,
    parse_query,
)
from ivr_engine.api.serialize import CustomerListJson, customer_json, named_field_json
from ivr_engine.domain.models import KnownField
from ivr_engine.ports import Identity

routes = web.RouteTableDef()


@routes.post("/v1/customers")
async def create_customer(request: web.Request) -> web.Response:
    body = await parse_body(request, CreateCustomer)
    check_field_values(request.app[MENUS], body.fields, "fields")
    now = request.app[CLOCK]()
    identities = tuple(dict.fromkeys(Identity(i.kind, i.value) for i in body.identities))
    fields = [KnownField(n, v, body.source_channel, now) for n, v in body.fields.items()]
    customer = await request.app[STORE].create_customer(body.display_name, identities, fields)
    return web.json_response(customer_json(customer), status=201)


@routes.get("/v1/customers")
async def find_customers(request: web.Request) -> web.Response:
    query = parse_query(request, LookupQuery)
    kind, value = query.identity()
    found = await request.app[STORE].find_customers(Identity(kind, value))
    result: CustomerListJson = {"customers": [customer_json(c) for c in found]}
    return web.json_response(result)


@routes.get("/v1/customers/{id}")
async def get_customer(request: web.Request) -> web.Response:
    customer = await request.app[STORE].get_customer(customer_id_param(request))
    if customer is None:
        raise ApiError(404, "customer_not_found", "customer not found")
    return web.json_response(customer_json(customer))


@routes.patch("/v1/customers/{id}")
async def update_customer(request: web.Request) -> web.Response:
    customer_id = customer_id_param(request)
    body = await parse_body(request, UpdateCustomer)
    customer = await request.app[STORE].update_customer(customer_id, body.display_name)
    return web.json_response(customer_json(customer))


@routes.post("/v1/customers/{id}/identities")
async def add_identity(request: web.Request) -> web.Response:
    customer_id = customer_id_param(request)
    body = await parse_body(request, IdentityIn)
    identity = Identity(body.kind, body.value)
    customer = await request.app[STORE].add_identity(customer_id, identity)
    return web.json_response(customer_json(customer))


@routes.post("/v1/customers/{id}/merge")
async def merge_customers(request: web.Request) -> web.Response:
    target_id = customer_id_param(request)
    body = await parse_body(request, MergeRequest)
    store = request.app[STORE]
    customer = await store.merge_customers(body.source_customer_id, target_id, body.reason)
    return web.json_response(customer_json(customer))


@routes.put("/v1/customers/{id}/fields/{name}")
async def put_field(request: web.Request) -> web.Response:
    customer_id = customer_id_param(request)
    name = field_name_param(request)
    body = await parse_body(request, PutField)
    check_field_value(request.app[MENUS], name, body.value)
    known = KnownField(name, body.value, body.source_channel, request.app[CLOCK](), body.verified)
    stored = await request.app[STORE].put_known_field(customer_id, known)
    return web.json_response(named_field_json(stored))  # what a GET now shows
