"""``POST /v1/continuations/redeem`` {"token": ...}: the chat side opens a continuation link.

Single use: the first redeem wins (200 with the case, the customer, the intent and what the
caller entered — sensitive fields by name only); a second gets 409, an expired token 410, a
tampered/malformed/unknown-key one 400. A ``continuation.redeemed`` event joins the case on
the token's channel, so the case reads as one thread: call → SMS → chat.

That event (id ``continuation:{jti}``, inserted idempotently) is also the record of the
redeem: the one insert that stores it wins; any other redeem of the token, in this or another
engine process, before or after a restart, finds it stored and gets 409. No Redis needed
(``continuation_redis_url`` adds its check after it; Redis down after the event is stored
is logged and the redeem answers 200, so the link is never burned by a 503). A timeline
that cannot be written is a 503 and consumes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from crm_bridge.continuation import ContinuationTokens
from crm_bridge.continuation_claims import Continuation
from crm_bridge.continuation_errors import (
    ContinuationError,
    ExpiredToken,
    TokenAlreadyUsed,
    UsedTokenStoreUnavailable,
)
from ivr_engine.api.body_time import late_body_message, read_in_time
from ivr_engine.api.errors import ApiError
from ivr_engine.ports import NewTimelineEvent, TimelineStore

MAX_BODY = 4096
BODY_TIMEOUT_S = 10.0
_CHUNK = 1024


class _BodyTooLarge(Exception):
    pass


async def read_body(request: web.Request, limit: int = MAX_BODY) -> bytes:
    """The whole body, however many TCP segments it came in (``content.read(n)`` returns
    only what is buffered); ``_BodyTooLarge`` past ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    total = 0
    while chunk := await request.content.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def redeem_routes(
    tokens: ContinuationTokens,
    store: TimelineStore,
    clock: Callable[[], datetime],
    *,
    body_timeout_s: float = BODY_TIMEOUT_S,  # the engine passes http_body_timeout_s
) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/v1/continuations/redeem")
    async def redeem(request: web.Request) -> web.Response:
        try:
            raw = await read_in_time(request, read_body(request), body_timeout_s)
        except _BodyTooLarge:
            return _error(413, "body_too_large", f"at most {MAX_BODY} bytes")
        except TimeoutError:  # raised: the API's middleware closes the connection after it
            message = late_body_message(body_timeout_s)
            raise ApiError(408, "body_timeout", message) from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: recursion
            return _error(400, "invalid_json", "the body is not JSON")
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            return _error(400, "invalid_body", "token: a non-empty string is required")

        async def first_use(claims: Continuation) -> bool:
            return await store.append_events([redeemed_event(claims, clock())]) == 1

        try:
            claims = await tokens.redeem(token, first_use)
        except TokenAlreadyUsed:
            return _error(409, "token_used", "this link was already used")
        except ExpiredToken:
            return _error(410, "token_expired", "this link has expired")
        except UsedTokenStoreUnavailable:
            return _error(503, "unavailable", "cannot check the link right now; try again")
        except ContinuationError as exc:
            return _error(400, "invalid_token", str(exc))
        return web.json_response(
            {
                "case_id": claims.case_id,
                "customer_id": claims.customer_id,
                "channel": claims.channel,
                "intent": claims.intent,
                "fields": dict(claims.fields),
                "sensitive_fields": sorted(claims.sensitive_fields),
            }
        )

    return routes


def redeemed_event(claims: Continuation, at: datetime) -> NewTimelineEvent:
    """The timeline's record of a redeem (one event id per token: stored once)."""
    return NewTimelineEvent(
        event_id=f"continuation:{claims.token_id}",
        customer_id=claims.customer_id,
        occurred_at=at,
        channel=claims.channel,
        event_type="continuation.redeemed",
        intent=claims.intent,
        case_id=claims.case_id,
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
