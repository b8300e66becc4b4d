"""Third round: the HTTP API against its own OpenAPI document (findings of a schemathesis
run on a real engine: coverage, fuzzing and stateful phases, positive and negative data).

Each test here failed on the code before its fix; the notes are in the commit messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.api.app import create_api_app
from ivr_engine.timeline import Timeline, open_timeline

Client = TestClient[Any, Any]


@pytest.fixture
async def timeline(tmp_path: Path) -> AsyncIterator[Timeline]:
    opened = await open_timeline("sqlite:///" + str(tmp_path / "t.db"))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def client(timeline: Timeline) -> AsyncIterator[Client]:
    app = create_api_app(store=timeline.store, lookup=timeline.lookup, menus={})
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


# --------------------------------------------------------------------------- 405


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", "/healthz", {"GET", "HEAD"}),
        ("DELETE", "/v1/events", {"POST"}),
        ("PUT", "/v1/customers/x1", {"GET", "HEAD", "PATCH"}),
    ],
)
async def test_405_names_the_allowed_methods(
    client: Client, method: str, path: str, allowed: set[str]
) -> None:
    """RFC 9110 15.5.6: a 405 carries ``Allow``. The JSON error middleware used to drop
    the header aiohttp puts on the exception (schemathesis ST204 on every route)."""
    resp = await client.request(method, path)
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    assert set(resp.headers.get("Allow", "").split(",")) == allowed
