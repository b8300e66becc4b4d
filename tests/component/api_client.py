"""The HTTP API under aiohttp's test client, for the component tests: the app over a
timeline with its clock stopped, and a response's JSON body (or error) with its status checked."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from aiohttp import web
from aiohttp.test_utils import TestClient

from ivr_engine.api.app import create_api_app
from ivr_engine.timeline import Timeline

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
Client = TestClient[Any, Any]


def timeline_api(timeline: Timeline) -> web.Application:
    """The API app over ``timeline``, with no menus and the clock stopped at ``NOW``."""
    return create_api_app(store=timeline.store, lookup=timeline.lookup, menus={}, clock=lambda: NOW)


async def json_body(resp: Any, status: int) -> Any:
    """The response's JSON body, once its status is ``status`` (else the body says why) and
    its content type is JSON."""
    body = await resp.text()
    assert resp.status == status, body
    assert resp.content_type == "application/json"
    return json.loads(body)


async def error_body(resp: Any, status: int, code: str | None = None) -> Mapping[str, Any]:
    """The response's ``error`` object (its ``code`` and ``message``), once its status is
    ``status`` and its code ``code`` (when given)."""
    body = await json_body(resp, status)
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    if code is not None:
        assert body["error"]["code"] == code, body
    return cast(Mapping[str, Any], body["error"])
