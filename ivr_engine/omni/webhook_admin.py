"""Webhook dead letters over HTTP (with ``webhooks_file``; every route needs ``admin_token``).

``GET /v1/webhooks/dead-letters?subscription_id=&limit=`` lists them, oldest first;
``POST /v1/webhooks/dead-letters/redrive`` sends chosen ones again (same delivery id and
body, signed with the subscription's current secret and URL), given exactly one of
``{"delivery_ids": [...]}``, ``{"subscription_id": ...}`` or ``{"all": true}``. Both act on
the engine's own store (``spool_dir/webhooks.db``). An unknown subscription id is a 404
naming the known ones; a stopped dispatcher or a failing store is a 503. What the routes
take and answer: ``webhook_admin_json``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from crm_bridge.webhooks.dispatcher import WebhookDispatcher
from crm_bridge.webhooks.errors import DeliveryStoreError, DispatcherNotRunning
from ivr_engine.api.auth import LiveTokens
from ivr_engine.api.errors import ApiError
from ivr_engine.api.schemas import parse_body, parse_query
from ivr_engine.contact_center.admin_auth import admin_refusal
from ivr_engine.omni.webhook_admin_json import (
    REDRIVE_ALL_LIMIT,
    DeadLettersQuery,
    RedriveBody,
    dead_letter_list_json,
    redrive_json,
    unknown_subscription,
)

__all__ = ["LIST_PATH", "REDRIVE_PATH", "webhook_admin_routes"]
log = logging.getLogger(__name__)

LIST_PATH = "/v1/webhooks/dead-letters"
REDRIVE_PATH = "/v1/webhooks/dead-letters/redrive"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


def webhook_admin_routes(
    dispatcher: WebhookDispatcher, admin_token: str | LiveTokens | None
) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    def admin(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            refusal = admin_refusal(request, admin_token)
            return refusal if refusal is not None else await handler(request)

        return checked

    def check_known(subscription_id: str | None) -> None:
        known = dispatcher.subscription_ids()
        if subscription_id is not None and subscription_id not in known:
            raise unknown_subscription(subscription_id, known)

    @routes.get(LIST_PATH)
    @admin
    async def list_dead_letters(request: web.Request) -> web.Response:
        query = parse_query(request, DeadLettersQuery)
        check_known(query.subscription_id)
        letters = await _available(dispatcher.dead_letters(query.subscription_id, query.limit))
        body = dead_letter_list_json(letters)
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    @routes.post(REDRIVE_PATH)
    @admin
    async def redrive(request: web.Request) -> web.Response:
        body = await parse_body(request, RedriveBody)
        check_known(body.subscription_id)
        if body.delivery_ids is not None:
            found = await _available(dispatcher.redrive(body.delivery_ids))
            return web.json_response(redrive_json(body.delivery_ids, found))
        every = dispatcher.redrive_all(body.subscription_id, REDRIVE_ALL_LIMIT)
        found = await _available(every)
        return web.json_response(redrive_json(found, found))

    return routes


async def _available(call: Awaitable[T]) -> T:
    """The dispatcher's answer; a 503 when it is stopped or its store fails."""
    try:
        return await call
    except DispatcherNotRunning:
        message = "webhook delivery is stopped (the engine is shutting down): try again"
        raise ApiError(503, "webhooks_stopped", message) from None
    except DeliveryStoreError:
        log.exception("webhooks: dead-letter admin: the delivery store failed")
        raise ApiError(503, "webhook_store_unavailable", "the webhook store failed") from None
