"""The load page (/v1/load.html) when the API needs a bearer token, in headless Chromium:
the page itself is open, its data (/v1/load) is sent with the token the timeline page keeps
in the tab's sessionStorage, and without one the status says what to do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Page, expect

from ivr_engine.agents import InMemoryAgentStateStore
from ivr_engine.api.auth import ApiTokens, auth_middleware
from ivr_engine.api.errors import error_middleware
from ivr_engine.contact_center.load_tracker import LoadTracker
from ivr_engine.contact_center.metrics import load_routes
from ivr_engine.routing import Agent, build_roster, parse_routing_config
from tests.browser.test_load_view_browser import ROUTING, per_test_fixture

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

TOKEN = "load-" + "l" * 40
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


@per_test_fixture
async def load_page() -> AsyncIterator[str]:
    roster = build_roster([Agent("a1", "Ann", "PJSIP/a1", {"billing": 4}, team="blue")])
    tracker = LoadTracker.from_config(parse_routing_config(Path(__file__), ROUTING), roster)
    tracker.call_routed("c1", "billing", T0, None)
    store = InMemoryAgentStateStore()
    checked = auth_middleware(ApiTokens([TOKEN]))
    app = web.Application(middlewares=[error_middleware, checked])
    app.add_routes(load_routes(tracker, store, lambda: T0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1/load.html"
    finally:
        await runner.cleanup()
        await store.aclose()


async def test_without_a_token_the_page_says_where_to_enter_it(load_page: str, page: Page) -> None:
    await page.goto(load_page)
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "offline")
    await expect(status).to_contain_text("the API needs a token; enter it on /timeline/")


async def test_the_token_of_the_tab_is_sent(load_page: str, page: Page) -> None:
    await page.goto(load_page)
    await page.evaluate(f"() => window.sessionStorage.setItem('ivr-engine.api-token', {TOKEN!r})")
    await page.reload()
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")
    waiting = page.locator('#skills tr[data-skill="billing"] [data-col="waiting"]')
    await expect(waiting).to_have_text("1")
