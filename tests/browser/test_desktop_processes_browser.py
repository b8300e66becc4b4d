"""The desktop across two engine OS processes in a real headless Chromium.

Two ``desktop_node`` processes share the real Redis (agent state, sessions, relay). The agent
logs in through process A's page; a call routed by process B pops on that page; the same
browser opening process B's page is already logged in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from ivr_engine.desktop import MASK
from tests.component.desktop_node import PASSWORDS, Cluster, two_nodes
from tests.redis_support import REDIS_URL

pytestmark = [
    pytest.mark.browser,
    pytest.mark.processes,
    pytest.mark.asyncio(loop_scope="module"),
]


@pytest_asyncio.fixture(loop_scope="module")
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with two_nodes(REDIS_URL, tmp_path) as running:
        yield running


async def test_pop_routed_by_process_b_appears_on_the_page_served_by_process_a(
    cluster: Cluster, page: Page
) -> None:
    await page.goto(f"{cluster.a.desktop}/")
    await page.fill("#login-agent", "a1")
    await page.fill("#login-password", PASSWORDS["a1"])
    await page.click("#login-submit")
    await expect(page.locator("#connection")).to_have_attribute("data-connected", "true")
    await page.click("button[data-action=available]")
    await expect(page.locator("#state")).to_have_attribute("data-state", "available")

    body = {"call_id": "call-browser-1", "phone": cluster.phone, "customer_id": cluster.customer_id}
    url = f"{cluster.b.origin}/test/route"
    async with aiohttp.ClientSession() as control, control.post(url, json=body) as response:
        assert (await response.json())["agent_id"] == "a1"

    await expect(page.locator("#pop")).to_be_visible()
    await expect(page.locator("#pop-customer-name")).to_have_text("Grace Hopper")
    await expect(page.locator("tr[data-field=postcode] td").nth(1)).to_have_text(MASK)
    await expect(page.locator("#pop-contacts tbody tr")).to_have_count(3)
    await expect(page.locator("#state")).to_have_attribute("data-state", "ringing")

    on_b = await page.context.new_page()
    await on_b.goto(f"{cluster.b.desktop}/")
    await expect(on_b.locator("#connection")).to_have_attribute("data-connected", "true")
    await expect(on_b.locator("#pop-customer-name")).to_have_text("Grace Hopper")
