"""A value the database cannot hold (PostgreSQL SQLSTATE class 22, data exception) is the
request's fault: 400 ``value_rejected`` naming why, not a 503 "timeline unavailable" that
sends clients retrying and logs an outage. Real PostgreSQL; the trigger is a database in
LATIN1, which has no "李" (22P05 untranslatable character), reads and writes alike."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.api.app import create_api_app
from ivr_engine.timeline import open_timeline
from ivr_engine.timeline.migrate import upgrade
from tests.component.test_agents_management_api import AUTH, NEW_AGENT, TOKEN, start_engine

pytestmark = pytest.mark.postgres

LATIN1 = "ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
NewPg = Callable[..., Coroutine[Any, Any, str]]
EMAIL = {"kind": "email", "value": "ada@example.com"}
REFUSED: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/customers", {"display_name": "李", "identities": [EMAIL]}),
    ("POST", "/v1/customers", {"identities": [{"kind": "email", "value": "李@example.com"}]}),
    ("POST", "/v1/customers", {"identities": [EMAIL], "fields": {"city": "李"}}),
    (
        "POST",
        "/v1/events",
        {
            "event_id": "e-1",
            "identity": EMAIL,
            "channel": "web",
            "event_type": "x",
            "data": {"note": "李"},
        },
    ),
    (
        "POST",
        "/v1/messages",
        {
            "message_id": "m-1",
            "channel": "sms",
            "direction": "inbound",
            "from": "+15551230000",
            "text": "hello 李",
        },
    ),
]


@pytest.fixture
async def latin1_url(new_pg_database: NewPg) -> str:
    url = await new_pg_database(LATIN1)
    await upgrade(url)
    return url


@pytest.fixture
async def client(latin1_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    timeline = await open_timeline(latin1_url)
    app = create_api_app(store=timeline.store, lookup=timeline.lookup, menus={})
    try:
        async with TestClient(TestServer(app)) as running:
            yield running
    finally:
        await timeline.close()


def _is_value_rejected(status: int, body: dict[str, Any]) -> bool:
    error = body.get("error", {})
    return (
        status == 400
        and error.get("code") == "value_rejected"
        and "LATIN1" in error.get("message", "")
        and "change or leave out that value" in error["message"]
    )


async def test_a_value_the_database_cannot_hold_is_a_400(
    client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for method, path, body in REFUSED:
        response = await client.request(method, path, json=body)
        assert _is_value_rejected(response.status, await response.json()), (path, body)
    for identity in ({"email": EMAIL["value"]}, {"phone": "+15551230000"}):
        response = await client.get("/v1/customers", params=identity)
        assert await response.json() == {"customers": []}, identity  # no empty customer left
    response = await client.get("/v1/customers", params={"email": "李@example.com"})
    assert _is_value_rejected(response.status, await response.json())  # a read alike
    response = await client.post(
        "/v1/customers", json={"display_name": "Ada", "identities": [EMAIL]}
    )
    assert response.status == 201, await response.text()  # the database was up all along
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_an_agent_the_roster_cannot_hold_is_a_400(latin1_url: str, tmp_path: Path) -> None:
    engine = await start_engine(latin1_url, tmp_path, admin_token=TOKEN)
    try:
        base = f"http://127.0.0.1:{engine.http_port}"
        async with aiohttp.ClientSession(base_url=base) as http:
            for method, path, body in (
                ("POST", "/v1/agents", {**NEW_AGENT, "name": "李"}),
                ("PATCH", "/v1/agents/a1", {"team": "李"}),
            ):
                async with http.request(method, path, json=body, headers=AUTH) as response:
                    assert _is_value_rejected(response.status, await response.json()), path
            async with http.get("/v1/agents/c3") as response:
                assert response.status == 404  # nothing written
    finally:
        await engine.stop()
