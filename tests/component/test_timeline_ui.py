"""The customer timeline page over HTTP: a real SQLite timeline, aiohttp's test client.

The page is mounted at /timeline on the engine's API app, as the engine wires it, so the
API calls the page makes go to the real routes on the same origin.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivr_engine.api.app import create_api_app
from ivr_engine.domain.errors import ConfigError
from ivr_engine.menu_config import load_menus
from ivr_engine.ports import Identity, NewTimelineEvent, TimelineStore
from ivr_engine.timeline import Timeline, open_timeline
from ivr_engine.timeline_ui import CONTENT_SECURITY_POLICY, create_timeline_ui_app

REPO = Path(__file__).resolve().parents[2]
MENUS = load_menus(REPO / "config" / "menus")
Client = TestClient[Any, Any]
STATIC = resources.files("ivr_engine.timeline_ui").joinpath("static")


@pytest.fixture
async def timeline(sqlite_url: str) -> AsyncIterator[Timeline]:
    opened = await open_timeline(sqlite_url, migrate=False)
    try:
        yield opened
    finally:
        await opened.close()


def _engine_app(timeline: Timeline, ui: web.Application | None = None) -> web.Application:
    """The API app as the root and the page at /timeline, as ``ivr_engine.app`` mounts it."""
    api = create_api_app(store=timeline.store, lookup=timeline.lookup, menus=MENUS)
    api.add_subapp("/timeline", ui or create_timeline_ui_app(timeline.store))
    return api


@pytest.fixture
async def client(timeline: Timeline) -> AsyncIterator[Client]:
    async with TestClient(TestServer(_engine_app(timeline))) as opened:
        yield opened


async def _json(resp: Any, status: int = 200) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


# --------------------------------------------------------------------------- page and assets


async def test_page_is_served_with_its_settings_and_no_inline_script(client: Client) -> None:
    resp = await client.get("/timeline/")
    assert resp.status == 200
    assert resp.content_type == "text/html" and resp.charset == "utf-8"
    page = await resp.text()
    assert 'data-api-base="/"' in page and 'data-page-size="50"' in page
    assert '<script src="static/timeline.js" defer></script>' in page
    assert 'href="static/timeline.css"' in page
    assert len(re.findall(r"<script\b", page)) == 1  # the one file; nothing inline
    assert not re.search(r"\bon[a-z]+=|style=|javascript:|https?://|{{", page)
    head = await client.head("/timeline/")
    assert head.status == 200


async def test_every_response_carries_the_content_security_policy(client: Client) -> None:
    for path in ("/timeline/", "/timeline/static/timeline.js", "/timeline/static/timeline.css"):
        resp = await client.get(path)
        assert resp.status == 200, path
        csp = resp.headers["Content-Security-Policy"]
        assert csp == CONTENT_SECURITY_POLICY
        assert csp.startswith("default-src 'self'") and "unsafe" not in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("timeline.js", "text/javascript"), ("timeline.css", "text/css")],
)
async def test_static_files_are_served_as_packaged(
    client: Client, name: str, content_type: str
) -> None:
    resp = await client.get(f"/timeline/static/{name}")
    assert resp.status == 200 and resp.content_type == content_type
    assert await resp.read() == STATIC.joinpath(name).read_bytes()


async def test_the_script_never_writes_markup() -> None:
    script = STATIC.joinpath("timeline.js").read_text("utf-8")
    assert not re.search(r"\.(inner|outer)HTML\b|insertAdjacentHTML|document\.write|eval\(", script)
    assert "textContent" in script


async def test_the_bare_mount_point_redirects_to_the_page_keeping_the_query(
    client: Client,
) -> None:
    resp = await client.get("/timeline", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/timeline/"
    resp = await client.get("/timeline?q=%2B1555+a%26b", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/timeline/?q=%2B1555+a%26b"


@pytest.mark.parametrize(
    "path",
    [
        "/timeline/nope",
        "/timeline/static/",
        "/timeline/static/index.html",
        "/timeline/static/nope.js",
        "/timeline/static/timeline.JS",
        "/timeline/static/..%2fapp.py",
        "/timeline/static/..%2f..%2fapi%2fapp.py",
        "/timeline/static/timeline.js/x",
        "/timelinex",
    ],
)
async def test_unknown_paths_are_404(client: Client, path: str) -> None:
    body = await _json(await client.get(path), 404)
    assert body["error"]["code"] == "not_found"


async def test_other_methods_are_refused(client: Client) -> None:
    assert (await client.post("/timeline/", data=b"x")).status == 405
    assert (await client.delete("/timeline/static/timeline.js")).status == 405


async def test_standalone_sub_app_serves_and_404s_on_its_own(timeline: Timeline) -> None:
    root = web.Application()
    root.add_subapp("/timeline", create_timeline_ui_app(timeline.store))
    async with TestClient(TestServer(root)) as client:
        resp = await client.get("/timeline/")
        assert resp.status == 200
        assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert (await client.get("/timeline/static/nope.css")).status == 404
        assert (await client.get("/timeline/x/y")).status == 404


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/", "/"),
        ("", "/"),
        ("/api", "/api/"),
        ("/api/", "/api/"),
        ("/engine/v-2_x.y~/", "/engine/v-2_x.y~/"),
    ],
)
async def test_api_base_and_page_size_reach_the_page(
    timeline: Timeline, given: str, expected: str
) -> None:
    ui = create_timeline_ui_app(timeline.store, api_base=given, page_size=7)
    async with TestClient(TestServer(_engine_app(timeline, ui))) as client:
        page = await (await client.get("/timeline/")).text()
    assert f'data-api-base="{expected}"' in page and 'data-page-size="7"' in page


@pytest.mark.parametrize(
    "api_base",
    ["api", "//evil.example/", "https://evil.example/", "/a b/", '/x"><script>/', "/a//b/"],
)
def test_an_api_base_off_this_origin_is_refused(api_base: str) -> None:
    store: Any = object()  # never used while building
    with pytest.raises(ConfigError, match="api_base"):
        create_timeline_ui_app(store, api_base=api_base)


@pytest.mark.parametrize("page_size", [0, -1, 201])
def test_a_page_size_the_api_would_refuse_is_refused(page_size: int) -> None:
    store: Any = object()
    with pytest.raises(ConfigError, match="page_size"):
        create_timeline_ui_app(store, page_size=page_size)


# --------------------------------------------------------------------------- the API the page uses


async def _seed(store: TimelineStore) -> str:
    customer = await store.create_customer(
        "Ada Lovelace", [Identity("phone", "+15550100001"), Identity("email", "ada@example.com")]
    )
    start = datetime(2025, 6, 1, tzinfo=UTC)
    channels = ["email", "voice", "sms", "chat"]
    await store.append_events(
        [
            NewTimelineEvent(
                event_id=f"e{i}",
                customer_id=customer.customer_id,
                occurred_at=start + timedelta(hours=i),
                channel=channel,
                event_type=f"{channel}.contact",
                case_id="CASE-7" if channel in ("voice", "chat") else None,
            )
            for i, channel in enumerate(channels)
        ]
    )
    return customer.customer_id


async def test_the_api_answers_the_calls_the_page_makes(client: Client, timeline: Timeline) -> None:
    """The page's contract with the API: lookup by phone or e-mail, then newest-first pages."""
    customer_id = await _seed(timeline.store)
    for query in ("phone=%2B15550100001", "email=ADA@example.com"):
        found = await _json(await client.get(f"/v1/customers?{query}"))
        [customer] = found["customers"]
        assert customer["customer_id"] == customer_id
        assert customer["display_name"] == "Ada Lovelace"
        assert {"kind": "phone", "value": "+15550100001"} in customer["identities"]
    assert (await _json(await client.get("/v1/customers?phone=%2B15550199999")))["customers"] == []
    first = await _json(await client.get(f"/v1/customers/{customer_id}/timeline?limit=2"))
    assert [e["channel"] for e in first["events"]] == ["chat", "sms"]
    assert first["events"][0]["case_id"] == "CASE-7"
    before = first["next_before"]
    rest = await _json(
        await client.get(f"/v1/customers/{customer_id}/timeline?limit=2&before={before}")
    )
    assert [e["channel"] for e in rest["events"]] == ["voice", "email"]
    assert rest["next_before"] is None
