"""API tokens on the whole HTTP API of a real engine (SQLite timeline, agents, load view,
continuations, webhook dead letters, timeline page, desktop): every route the engine serves
is walked, so a route added later without the check fails ``test_every_route_needs_a_token``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ivr_engine.api.app import create_api_app
from ivr_engine.api.auth import OPEN_PATHS
from ivr_engine.api.openapi import openapi_document
from ivr_engine.app import Engine
from ivr_engine.cli import main
from tests.component.test_agents_management_api import NEW_AGENT, start_engine
from tests.component.test_webhook_admin_routes import quiet_webhooks_file

API_TOKEN = "api-" + "a" * 40
OTHER_API_TOKEN = "api-" + "b" * 40
ADMIN_TOKEN = "admin-" + "c" * 40
SECRET = "ab" * 32
ADMIN_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
_PARAM = re.compile(r"\{[^}]+\}")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def engine(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    running = await start_engine(
        sqlite_url,
        tmp_path,
        api_tokens=[API_TOKEN, OTHER_API_TOKEN],
        admin_token=ADMIN_TOKEN,
        continuation_secret=SECRET,
        webhooks_file=quiet_webhooks_file(tmp_path),
    )
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def http(engine: Engine) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{engine.http_port}") as session:
        yield session


def served_routes(engine: Engine) -> list[tuple[str, str]]:
    """(method, canonical path) of every route the engine's HTTP server dispatches to,
    sub-apps included."""
    assert engine.http is not None
    found = set()
    for route in engine.http.app.router.routes():
        resource = route.resource
        if resource is not None and route.method != "*":
            found.add((route.method, resource.canonical))
    return sorted(found)


def admin_only(method: str, path: str) -> bool:
    """Agent writes and every webhook dead-letter route: for the admin token only."""
    agent_write = path.startswith("/v1/agents") and method.upper() in ADMIN_WRITES
    return agent_write or path.startswith("/v1/webhooks")


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(("/timeline", "/desktop"))


async def status_of(
    http: aiohttp.ClientSession, method: str, path: str, headers: dict[str, str]
) -> tuple[int, str, dict[str, Any] | None]:
    url = _PARAM.sub("x1", path)
    async with http.request(method, url, headers=headers, allow_redirects=False) as response:
        data = await response.json() if response.content_type == "application/json" else None
        return response.status, response.headers.get("WWW-Authenticate", ""), data


async def test_every_route_needs_a_token(engine: Engine, http: aiohttp.ClientSession) -> None:
    protected = [(m, p) for m, p in served_routes(engine) if not is_open(p)]
    paths = {p for _, p in protected}
    # The route walk saw the engine's whole API, not a part of it.
    assert {"/v1/customers", "/v1/agents", "/v1/load", "/metrics"} <= paths
    assert {"/v1/messages", "/v1/continuations/redeem", "/v1/menu-preview"} <= paths
    assert {"/v1/webhooks/dead-letters", "/v1/webhooks/dead-letters/redrive"} <= paths
    wrong = []
    for method, path in protected:
        status, challenge, _ = await status_of(http, method, path, {})
        if status != 401 or challenge != 'Bearer realm="ivr-engine"':
            wrong.append(("no token", method, path, status, challenge))
        status, challenge, _ = await status_of(http, method, path, bearer("x" * 44))
        if status != 401 or 'error="invalid_token"' not in challenge:
            wrong.append(("wrong token", method, path, status, challenge))
        admin_write = admin_only(method, path)
        status, _, data = await status_of(http, method, path, bearer(OTHER_API_TOKEN))
        code = data["error"]["code"] if data and "error" in data else None
        refused = status in (401, 403)
        if (
            status >= 500
            or refused != admin_write
            or (admin_write and method != "HEAD" and code != "admin_token_required")  # no body
        ):
            wrong.append(("api token", method, path, status, code))
        status, _, _ = await status_of(http, method, path, bearer(ADMIN_TOKEN))
        if status in (401, 403) or status >= 500:
            wrong.append(("admin token", method, path, status, ""))
    assert wrong == []


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/openapi.json",
        "/docs",
        "/timeline/",
        "/timeline/static/timeline.js",
        "/v1/load.html",
        "/v1/load.js",
        "/desktop/",
    ],
)
async def test_open_paths_need_no_token(http: aiohttp.ClientSession, path: str) -> None:
    async with http.get(path) as response:
        assert response.status == 200, path


async def test_a_route_added_later_is_protected_too(engine: Engine) -> None:
    """The check is on the app, not on each handler: a new route cannot be left open."""
    assert engine.timeline is not None
    fresh = create_api_app(
        store=engine.timeline.store,
        lookup=engine.timeline.lookup,
        menus=engine.menus,
        api_tokens=[API_TOKEN],
    )
    fresh.router.add_get("/v1/new-thing", _ok)
    fresh.router.add_get("/anything-else", _ok)
    runner = web.AppRunner(fresh, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession(base_url=base) as http:
            for path in ("/v1/new-thing", "/anything-else", "/v1/no-such-route"):
                async with http.get(path) as response:
                    assert response.status == 401, path
            async with http.get("/v1/new-thing", headers=bearer(API_TOKEN)) as response:
                assert response.status == 200
    finally:
        await runner.cleanup()


async def _ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def test_the_right_token_reads_and_writes_the_timeline(http: aiohttp.ClientSession) -> None:
    body = {"identities": [{"kind": "phone", "value": "+15550100001"}], "display_name": "Ann"}
    async with http.post("/v1/customers", json=body) as response:
        assert response.status == 401
    async with http.post("/v1/customers", json=body, headers=bearer(API_TOKEN)) as response:
        assert response.status == 201
        customer_id = (await response.json())["customer_id"]
    path = f"/v1/customers/{customer_id}/timeline"
    for token in (OTHER_API_TOKEN, ADMIN_TOKEN):  # any api token, and the admin token
        async with http.get(path, headers=bearer(token)) as response:
            assert response.status == 200
    async with http.get("/metrics", headers=bearer(API_TOKEN)) as response:
        assert response.status == 200 and "ivr_" in await response.text()


async def test_agent_writes_need_the_admin_token_not_an_api_token(
    http: aiohttp.ClientSession,
) -> None:
    async with http.post("/v1/agents", json=NEW_AGENT, headers=bearer(API_TOKEN)) as response:
        assert response.status == 403
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    async with http.post("/v1/agents", json=NEW_AGENT, headers=bearer(ADMIN_TOKEN)) as response:
        assert response.status == 201
    async with http.get("/v1/agents/c3", headers=bearer(API_TOKEN)) as response:
        assert response.status == 200


HOSTILE = [
    "",
    "Bearer",
    "Bearer ",
    "bearer" + " " * 50,
    f"Basic {API_TOKEN}",
    f"Token {API_TOKEN}",
    f"{API_TOKEN}",
    f"Bearer {API_TOKEN} extra",
    f"Bearer {API_TOKEN[:-1]}",
    "Bearer " + "a" * 7000,
    "Bearer tökén-" + "a" * 40,
    "Bearer \u2603" * 300,
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_authorization_headers_get_a_clean_401(
    http: aiohttp.ClientSession, value: str
) -> None:
    headers = {"Authorization": value}
    async with http.get("/v1/customers?phone=%2B15550100001", headers=headers) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="ivr-engine"')
        assert (await response.json())["error"]["code"] == "unauthorized"


async def raw_request(port: int, path: str, authorization: bytes) -> bytes:
    """Bytes no client library would send (invalid UTF-8) straight onto the socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST "
            + path.encode()
            + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
            + authorization
            + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize("tokens", ["api", "admin only"])
async def test_undecodable_header_bytes_get_a_401_not_a_500(
    sqlite_url: str, tmp_path: Path, tokens: str
) -> None:
    extra: dict[str, object] = {"admin_token": ADMIN_TOKEN}
    if tokens == "api":
        extra["api_tokens"] = [API_TOKEN]
    engine = await start_engine(sqlite_url, tmp_path, **extra)
    try:
        for value in (b"Bearer \xff\xfe" + b"a" * 40, b"Bearer \xc3" * 20, b"\xff"):
            answer = await raw_request(engine.http_port, "/v1/agents", value)
            assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    finally:
        await engine.stop()


async def test_without_api_tokens_the_api_is_open_and_says_so(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ivr_engine.app")
    engine = await start_engine(sqlite_url, tmp_path, admin_token=ADMIN_TOKEN)
    try:
        base = f"http://127.0.0.1:{engine.http_port}"
        async with aiohttp.ClientSession(base_url=base) as http:
            async with http.get("/v1/customers?phone=%2B15550100001") as response:
                assert response.status == 200
            async with http.get("/metrics") as response:
                assert response.status == 200
    finally:
        await engine.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no authentication" in text for text in warnings), warnings


async def test_with_api_tokens_no_open_warning_and_no_token_in_the_log(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    assert not any("no authentication" in r.getMessage() for r in caplog.records)
    assert API_TOKEN not in caplog.text and ADMIN_TOKEN not in caplog.text
    assert API_TOKEN not in repr(engine.settings)


def test_openapi_declares_the_bearer_scheme_on_protected_operations() -> None:
    document = openapi_document()
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiToken"] == {**schemes["apiToken"], "type": "http", "scheme": "bearer"}
    for path, item in document["paths"].items():
        for method, op in item.items():
            if path in OPEN_PATHS:
                assert op["security"] == [], (method, path)
                continue
            assert op["security"] in ([{"apiToken": []}], [{"adminToken": []}]), (method, path)
            assert "401" in op["responses"], (method, path)
            admin_write = admin_only(method, path)
            assert (op["security"] == [{"adminToken": []}]) == admin_write, (method, path)


def test_the_engine_refuses_to_start_open_on_the_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no config/engine.yaml here
    monkeypatch.setenv("IVR_ENGINE_HTTP_HOST", "0.0.0.0")
    monkeypatch.setenv("IVR_ENGINE_DATABASE_URL", f"sqlite:///{tmp_path / 'never.db'}")
    assert main(["run"]) == 2
    error = capsys.readouterr().err
    assert "http_host (env IVR_ENGINE_HTTP_HOST): '0.0.0.0' is not a loopback address" in error
    assert "IVR_ENGINE_API_TOKENS" in error and "allow_unauthenticated_http" in error
    assert not (tmp_path / "never.db").exists()
