"""The HTTP API app factory: text channels and admins write into the shared timeline.

Every failure is a JSON error (see ``errors``); bodies are capped at ``max_body_bytes`` and
must arrive whole within ``body_timeout_s``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ivr_engine.api import preview, routes, routes_events, routes_messages
from ivr_engine.api.appending import APPENDER, Appender
from ivr_engine.api.auth import LiveTokens, auth_middleware
from ivr_engine.api.bad_requests import quiet_bad_requests
from ivr_engine.api.errors import error_middleware
from ivr_engine.api.keys import (
    BODY_TIMEOUT_S,
    CLOCK,
    COUNTRY_CODE_WITHOUT_PLUS,
    DEFAULT_REGION,
    LOOKUP,
    MAX_BODY_BYTES,
    MENUS,
    STORE,
)
from ivr_engine.api.openapi import served_document
from ivr_engine.api.outage_log import OUTAGE_LOG, OutageLog
from ivr_engine.api.serialize import HealthJson
from ivr_engine.domain.models import CountryCodeWithoutPlus, Menu
from ivr_engine.ports import CallerLookup, TimelineStore

DEFAULT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_BODY_TIMEOUT_S = 10.0  # the setting http_body_timeout_s
# A well-formed id nobody has: a read that proves the store answers.
_HEALTH_PROBE_ID = "00000000-0000-0000-0000-000000000000"

meta = web.RouteTableDef()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def create_api_app(
    *,
    store: TimelineStore,
    lookup: CallerLookup,
    menus: Mapping[str, Menu],
    clock: Callable[[], datetime] = _utc_now,
    default_region: str = "US",
    country_code_without_plus: CountryCodeWithoutPlus = "auto",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    api_tokens: Sequence[str] = (),
    admin_token: str | None = None,
    allowed_hosts: Iterable[str] = (),
    tokens: LiveTokens | None = None,
) -> web.Application:
    """With ``api_tokens``, every route of this app and of what is added to it later needs
    one of them or ``admin_token`` (``auth``: all but ``OPEN_PATHS``/``OPEN_PREFIXES``).
    Without, only requests whose ``Host`` is a loopback name or in ``allowed_hosts``.
    ``body_timeout_s``: a JSON body not in whole by then is a 408 (``schemas.parse_body``).
    ``tokens``: the tokens in force, which a reload may replace (then ``api_tokens`` and
    ``admin_token`` are not used).

    Webhooks are not the API's business: the relay tails the committed timeline
    (``crm_bridge.webhooks.relay``)."""
    if not body_timeout_s > 0:
        raise ValueError(f"body_timeout_s must be > 0, not {body_timeout_s!r}")
    checked = auth_middleware(
        tokens if tokens is not None else LiveTokens(api_tokens, admin_token), allowed_hosts
    )
    app = web.Application(middlewares=[error_middleware, checked], client_max_size=max_body_bytes)
    app.cleanup_ctx.append(quiet_bad_requests)  # an over-long header: one line, no traceback
    app[STORE] = store
    app[OUTAGE_LOG] = OutageLog()
    app[APPENDER] = Appender(store)
    app[LOOKUP] = lookup
    app[MENUS] = menus
    app[CLOCK] = clock
    app[DEFAULT_REGION] = default_region
    app[COUNTRY_CODE_WITHOUT_PLUS] = country_code_without_plus
    app[MAX_BODY_BYTES] = max_body_bytes
    app[BODY_TIMEOUT_S] = body_timeout_s
    for table in (routes.routes, routes_events.routes, preview.routes, meta):
        app.add_routes(table)
    routes_messages.install(app)
    return app


@meta.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 when the store answers a read; ``TimelineUnavailable`` becomes the 503."""
    await request.app[STORE].get_customer(_HEALTH_PROBE_ID)
    result: HealthJson = {"status": "ok"}
    return web.json_response(result)


def _document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of what ``app`` serves (routes added after the factory too)."""
    return served_document({resource.canonical for resource in app.router.resources()})


@meta.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(_document(request.app))


@meta.get("/docs")
async def docs(request: web.Request) -> web.Response:
    """A dependency-free page listing every operation (the full schema is /openapi.json)."""
    document = _document(request.app)
    rows = [
        f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
        f"<td>{html.escape(op.get('summary', ''))}</td></tr>"
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]
    schema = html.escape(json.dumps(document, indent=2))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>ivr-engine API</title></head>"
        "<body><h1>ivr-engine timeline API</h1><p>OpenAPI 3.1: "
        "<a href='/openapi.json'>/openapi.json</a></p><table>"
        + "".join(rows)
        + f"</table><details><summary>Schema</summary><pre>{schema}</pre></details></body></html>"
    )
    return web.Response(text=page, content_type="text/html")
