"""Third round: the HTTP API against its own OpenAPI document (findings of a schemathesis
run on a real engine: coverage, fuzzing and stateful phases, positive and negative data).

Each test here failed on the code before its fix; the notes are in the commit messages.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.api.app import create_api_app
from ivr_engine.api.auth import OPEN_PREFIXES
from ivr_engine.api.openapi import openapi_document
from ivr_engine.app import Engine
from ivr_engine.timeline import Timeline, open_timeline
from tests.component.test_agents_management_api import start_engine
from tests.component.test_webhook_admin_routes import quiet_webhooks_file

Client = TestClient[Any, Any]
ADMIN_TOKEN = "admin-" + "c" * 40
Operation = tuple[str, str]  # (method in lower case, canonical path)


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


# --------------------------------------------------------------------------- routes = document


def served_operations(app: web.Application) -> set[Operation]:
    """What ``app`` dispatches, sub-apps left out (``/timeline``, ``/desktop``: pages with
    their own private calls, not the API) and the HEAD aiohttp adds to each GET."""
    found = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "*"
    }
    return {
        (method, path)
        for method, path in found
        if not path.startswith(OPEN_PREFIXES) and not (method == "head" and ("get", path) in found)
    }


def documented_operations(document: dict[str, Any]) -> set[Operation]:
    return {(method, path) for path, item in document["paths"].items() for method in item}


@pytest.fixture
async def full_engine(tmp_path: Path) -> AsyncIterator[Engine]:
    """Every optional part of the API on: agents (load view, agent management),
    continuation links and webhooks (dead letters)."""
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    running = await start_engine(
        url,
        tmp_path,
        admin_token=ADMIN_TOKEN,
        continuation_secret="ab" * 32,
        webhooks_file=quiet_webhooks_file(tmp_path),
    )
    try:
        yield running
    finally:
        await running.stop()


async def test_every_route_of_the_engine_is_documented_and_back(full_engine: Engine) -> None:
    """The engine's whole API app against the whole document, both ways. ``/v1/load``,
    ``/metrics``, ``/v1/load.html``, ``/v1/load.js`` and ``/v1/continuations/redeem``
    were served but not documented."""
    assert full_engine.http is not None
    served = served_operations(full_engine.http.app)
    assert {("get", "/v1/agents"), ("post", "/v1/continuations/redeem")} <= served
    assert {("get", "/v1/webhooks/dead-letters")} <= served
    assert {("post", "/v1/webhooks/dead-letters/redrive")} <= served
    assert served == documented_operations(openapi_document())
    base = f"http://127.0.0.1:{full_engine.http_port}"
    async with aiohttp.ClientSession(base_url=base) as http, http.get("/openapi.json") as resp:
        assert resp.status == 200
        assert documented_operations(await resp.json()) == served


async def test_the_document_lists_only_what_the_app_serves(client: Client) -> None:
    """Without agents nor continuation links (the embedded default), ``/openapi.json``
    listed ``/v1/agents`` and ``/v1/agents/{agent_id}``, which answer 404 there."""
    served = served_operations(client.app)
    document = await (await client.get("/openapi.json")).json()
    assert documented_operations(document) == served
    assert ("post", "/v1/customers") in served and ("get", "/v1/agents") not in served
    page = await (await client.get("/docs")).text()
    assert "<code>/v1/events</code>" in page and "<code>/v1/agents</code>" not in page


# --------------------------------------------------------------------------- PATCH /v1/agents


def test_agent_patch_documents_null_only_where_it_is_taken() -> None:
    """``null`` clears ``password`` or ``token_sha256``; on the other fields the PATCH
    refuses it (400 "may not be null"), yet the document offered ``null`` for every one of
    them (schemathesis ST202: ``{"name": null}`` generated as valid, refused)."""
    patch = openapi_document()["components"]["schemas"]["AgentPatchBody"]["properties"]
    nullable = {name for name, prop in patch.items() if {"type": "null"} in prop.get("anyOf", [])}
    assert nullable == {"password", "token_sha256"}


async def test_agent_patch_takes_null_where_documented(full_engine: Engine) -> None:
    base = f"http://127.0.0.1:{full_engine.http_port}"
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession(base_url=base, headers=admin) as http:
        async with http.patch("/v1/agents/a1", json={"name": None}) as resp:
            assert resp.status == 400
        async with http.patch("/v1/agents/a1", json={"token_sha256": None}) as resp:
            assert resp.status == 200, await resp.text()


# --------------------------------------------------------------------------- field names


@pytest.mark.parametrize("name", ["zip", "z_1", "a" * 64, "0", "Zip", "a b", "_x", "a" * 65, "é"])
async def test_field_name_is_taken_iff_the_document_allows_it(client: Client, name: str) -> None:
    """``PUT /v1/customers/{id}/fields/{name}`` refuses (400) a name that is not lower-case
    letters, digits and ``_`` after a letter; the document said any string (schemathesis
    ST202 and its "schema validation mismatch" warning)."""
    operation = openapi_document()["paths"]["/v1/customers/{id}/fields/{name}"]["put"]
    (param,) = [p for p in operation["parameters"] if p["name"] == "name"]
    documented = re.search(param["schema"]["pattern"], name) is not None
    created = await client.post(
        "/v1/customers", json={"identities": [{"kind": "email", "value": "a@b.co"}]}
    )
    customer_id = (await created.json())["customer_id"]
    body = {"value": "v", "source_channel": "web"}
    resp = await client.put(f"/v1/customers/{customer_id}/fields/{quote(name)}", json=body)
    assert resp.status == (200 if documented else 400), await resp.text()


# --------------------------------------------------------------------------- unreadable bodies


@pytest.mark.parametrize("path", ["/v1/events", "/v1/customers", "/v1/messages"])
async def test_a_body_that_does_not_decode_is_a_400(
    client: Client, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """``Content-Encoding: gzip`` on a body that is not gzip: aiohttp raises
    ``RequestPayloadError`` from ``request.read()``, which became a 500 and an ERROR with
    a traceback ("unhandled error"), then a second traceback from aiohttp draining the
    body ("Unhandled exception"), for one hostile request. (``deflate`` and ``br`` are
    refused by aiohttp's parser itself, before any handler: 400 text/plain.)"""
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    with caplog.at_level(logging.WARNING):
        resp = await client.post(path, data=b'{"not": "compressed"}', headers=headers)
        error = (await resp.json())["error"]
    assert (resp.status, error["code"]) == (400, "unreadable_body"), error
    assert error["message"] == "the body cannot be read: Can not decode content-encoding: gzip"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


@pytest.mark.parametrize(
    "path",
    [
        "/v1/agents",
        "/v1/continuations/redeem",
        "/v1/webhooks/dead-letters/redrive",
        "/desktop/login",
    ],
)
async def test_a_body_that_does_not_decode_is_a_400_on_every_part(
    full_engine: Engine, path: str
) -> None:
    """The same through the routes the engine adds (agents, continuation links, webhook
    dead letters, the desktop's login): the API app's error middleware is theirs too."""
    headers = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "Authorization": f"Bearer {ADMIN_TOKEN}",
    }
    base = f"http://127.0.0.1:{full_engine.http_port}"
    async with (
        aiohttp.ClientSession(base_url=base) as http,
        http.post(path, data=b'{"not": "compressed"}', headers=headers) as resp,
    ):
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["error"]["code"] == "unreadable_body"
