"""DNS rebinding: an engine without api_tokens answers only under loopback names (and those
configured), so a page whose name was rebound to 127.0.0.1 cannot read or write timelines.

Real engine (SQLite timeline, agents and desktop), real sockets; the ``Host`` header is what
a browser sends for the page's name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr_engine.api.auth import AllowedHosts, host_name
from ivr_engine.api.openapi import openapi_document
from ivr_engine.app import Engine
from tests.component.test_agents_management_api import start_engine

API_TOKEN = "api-" + "a" * 40
REBOUND = "rebind.attacker.example"
EVENT = {
    "event_id": "rebind-1",
    "identity": {"kind": "phone", "value": "+15550100001"},
    "occurred_at": "2024-01-01T00:00:00Z",
    "channel": "chat",
    "event_type": "chat.message",
}


@pytest.fixture
async def open_engine(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    running = await start_engine(sqlite_url, tmp_path, http_allowed_hosts=["ivr.internal"])
    try:
        yield running
    finally:
        await running.stop()


async def send(
    engine: Engine, method: str, path: str, host: str | None, **kw: Any
) -> tuple[int, Any]:
    headers = dict(kw.pop("headers", {}))
    if host is not None:
        headers["Host"] = host.replace("PORT", str(engine.http_port))
    url = f"http://127.0.0.1:{engine.http_port}{path}"
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers=headers, allow_redirects=False, **kw) as resp,
    ):
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def test_a_rebound_name_can_neither_write_nor_read_timelines(open_engine: Engine) -> None:
    host = f"{REBOUND}:PORT"
    origin = {"Origin": f"http://{REBOUND}:{open_engine.http_port}"}
    status, body = await send(open_engine, "POST", "/v1/events", host, json=EVENT, headers=origin)
    assert status == 421, body
    assert body["error"]["code"] == "host_not_allowed"
    assert REBOUND in body["error"]["message"] and "http_allowed_hosts" in body["error"]["message"]
    query = "/v1/customers?phone=%2B15550100001"
    for path in (query, "/openapi.json", "/timeline/", "/desktop/", "/v1/agents"):
        status, _ = await send(open_engine, "GET", path, host)
        assert status == 421, path
    # nothing was written: the same write under a loopback name creates the customer
    status, body = await send(open_engine, "POST", "/v1/events", "127.0.0.1:PORT", json=EVENT)
    assert status == 201 and body["customer_created"] is True


@pytest.mark.parametrize(
    "host", ["127.0.0.1:PORT", "localhost:PORT", "LOCALHOST", "[::1]:PORT", "127.0.0.2", None]
)
async def test_loopback_names_and_configured_ones_are_served(
    open_engine: Engine, host: str | None
) -> None:
    status, body = await send(open_engine, "GET", "/v1/customers?phone=%2B15550100009", host)
    assert status == 200, body


async def test_a_configured_name_and_healthz_are_served(open_engine: Engine) -> None:
    status, _ = await send(
        open_engine, "GET", "/v1/customers?phone=%2B15550100009", "ivr.internal:PORT"
    )
    assert status == 200
    assert (await send(open_engine, "GET", "/healthz", f"{REBOUND}:PORT"))[0] == 200


async def test_the_timeline_page_and_the_desktop_work_on_loopback(open_engine: Engine) -> None:
    for host in ("127.0.0.1:PORT", "localhost:PORT"):
        status, page = await send(open_engine, "GET", "/timeline/", host)
        assert status == 200 and "<html" in page.lower()
        status, page = await send(open_engine, "GET", "/desktop/", host)
        assert status == 200 and "<html" in page.lower()
    origin = f"http://127.0.0.1:{open_engine.http_port}"
    login = {"agent_id": "a1", "password": "bea-demo-password"}
    status, body = await send(
        open_engine, "POST", "/desktop/login", None, json=login, headers={"Origin": origin}
    )
    assert status == 200, body


async def test_with_tokens_the_host_is_not_checked(sqlite_url: str, tmp_path: Path) -> None:
    engine = await start_engine(sqlite_url, tmp_path, api_tokens=[API_TOKEN])
    try:
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        path = "/v1/customers?phone=%2B15550100009"
        status, _ = await send(engine, "GET", path, f"{REBOUND}:PORT", headers=auth)
        assert status == 200
        status, body = await send(engine, "GET", path, f"{REBOUND}:PORT")
        assert status == 401, body  # the token decides, as before
    finally:
        await engine.stop()


@pytest.mark.parametrize(
    ("host", "name"),
    [("LocalHost:80", "localhost"), ("[::1]:8080", "::1"), ("::1", "::1"), ("a.b", "a.b")],
)
def test_host_name(host: str, name: str) -> None:
    assert host_name(host) == name


def test_allowed_hosts() -> None:
    hosts = AllowedHosts(["0.0.0.0", "Proxy.Example:443", ""])
    assert hosts.allows("proxy.example") and hosts.allows("127.9.9.9:1")
    assert not hosts.allows("0.0.0.0:8080") and not hosts.allows("127.0.0.1.nip.io")
    assert AllowedHosts(["*"]).allows("anything.example")


async def test_the_document_declares_the_421_and_the_redeem_codes(open_engine: Engine) -> None:
    """Every operation that can answer 421 says so (all but /healthz); the redeem route
    declares the 408 of a stalled body and the 404 of a customer missing from the timeline."""
    status, document = await send(open_engine, "GET", "/openapi.json", "127.0.0.1:PORT")
    assert status == 200
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert ("421" in op["responses"]) == (path != "/healthz"), (method, path)
    redeem = openapi_document()["paths"]["/v1/continuations/redeem"]["post"]["responses"]
    assert {"404", "408", "421"} <= set(redeem)
