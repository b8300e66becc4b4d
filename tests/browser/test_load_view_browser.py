"""The load page in a real headless Chromium (Debian's /usr/bin/chromium via Playwright).

A real localhost server mounts ``load_routes`` as the engine would (under /v1) with the
in-process agent store and a test clock; the test changes the tracker and the agent states
and the page must show the new figures on its next poll. Waits are on page conditions
(Playwright's auto-waiting ``expect``), never on sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.typedefs import Handler
from playwright.async_api import Locator, Page, expect

from ivr_engine.agents import (
    AgentSnapshot,
    AgentState,
    AgentStateUnavailable,
    InMemoryAgentStateStore,
)
from ivr_engine.api.errors import error_middleware
from ivr_engine.contact_center.load_tracker import LoadTracker
from ivr_engine.contact_center.metrics import load_routes
from ivr_engine.routing import Agent, build_roster, parse_routing_config

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]
module_fixture = pytest_asyncio.fixture(loop_scope="module", scope="module")
per_test_fixture = pytest_asyncio.fixture(loop_scope="module")

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
XSS = '<img src=x onerror=alert(1)> "night" \\ shift'

ROUTING = """
skills: [billing, support]
intents:
  billing: {skills: {billing: 3}, overflow: queue:billing}
  tech_support: {skills: {support: 3}, overflow: queue:support}
"""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class SwitchableAgents:
    """The in-process store, or an outage when ``down`` is set."""

    def __init__(self, store: InMemoryAgentStateStore) -> None:
        self.store = store
        self.down = False

    async def snapshot(self, *, now: datetime | None = None) -> Mapping[str, AgentSnapshot]:
        if self.down:
            raise AgentStateUnavailable("redis down")
        return await self.store.snapshot(now=now)


@dataclass
class Served:
    url: str  # the page
    tracker: LoadTracker
    agents: SwitchableAgents
    clock: Clock
    broken: list[bool]  # [True]: every request answers 503


@per_test_fixture
async def served() -> AsyncIterator[Served]:
    roster = build_roster(
        [
            Agent("a1", "Ann", "PJSIP/a1", {"billing": 4}, team="blue"),
            Agent("a2", "Bob", "PJSIP/a2", {"billing": 3, "support": 4}, team=XSS),
            Agent("a3", "Cy", "PJSIP/a3", {"support": 5}, team="blue"),
        ]
    )
    config = parse_routing_config(Path(__file__), ROUTING)
    clock = Clock()
    store = InMemoryAgentStateStore(clock=clock)
    for agent in roster.agents:
        await store.register_agent(agent.agent_id, now=T0)
    await store.set_state("a1", AgentState.AVAILABLE, now=T0)
    await store.set_state("a2", AgentState.AVAILABLE, now=T0)
    agents = SwitchableAgents(store)
    tracker = LoadTracker.from_config(config, roster)
    broken = [False]

    @web.middleware
    async def breaker(request: web.Request, handler: Handler) -> web.StreamResponse:
        if broken[0] and request.path == "/v1/load":
            raise web.HTTPServiceUnavailable()
        return await handler(request)

    app = web.Application(middlewares=[breaker, error_middleware])
    app.add_routes(load_routes(tracker, agents, clock))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Served(f"http://127.0.0.1:{port}/v1/load.html", tracker, agents, clock, broken)
    finally:
        await runner.cleanup()
        await store.aclose()


def _skill(page: Page, skill: str, column: str) -> Locator:
    return page.locator(f'#skills tr[data-skill="{skill}"] [data-col="{column}"]')


async def _row_is(page: Page, skill: str, **columns: str) -> None:
    for column, text in columns.items():
        await expect(_skill(page, skill, column)).to_have_text(text)


async def test_the_table_shows_the_load_and_follows_it(served: Served, page: Page) -> None:
    served.tracker.call_routed("c1", "billing", T0, None)
    served.tracker.call_routed("c2", "billing", T0 + timedelta(seconds=20), "a1")
    await served.agents.store.reserve("a1", "c2", 30, now=T0)
    await served.agents.store.confirm("a1", "c2", now=T0)
    served.clock.now = T0 + timedelta(seconds=65)

    await page.goto(served.url)  # the default: every 2 s
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")
    await expect(page.locator("#interval")).to_have_text("2")
    await _row_is(
        page, "billing", waiting="2", ringing="1", longest_wait="1:05", available="1", busy="1"
    )
    await _row_is(page, "support", waiting="0", ringing="0", longest_wait="0:00", logged_in="1")
    await expect(page.locator("#total-waiting")).to_have_text("2")
    await expect(page.locator("#total-ringing")).to_have_text("1")
    await expect(page.locator("#total-longest")).to_have_text("1:05")
    await expect(page.locator('#agents tr[data-state="available"] td')).to_have_text("1")
    await expect(page.locator('#agents tr[data-state="ringing"] td')).to_have_text("1")
    await expect(page.locator('#agents tr[data-state="logged_out"] td')).to_have_text("1")
    blue = page.locator('#teams tr[data-team="blue"]')
    await expect(blue.locator('[data-col="ringing"]')).to_have_text("1")
    await expect(blue.locator('[data-col="logged_out"]')).to_have_text("1")
    await expect(page.locator("#agent-state-warning")).to_be_hidden()

    # the agent answers c2, c1 hangs up, a support call arrives; a minute goes by
    served.tracker.call_answered("c2")
    await served.agents.store.confirm("a1", "c2", now=served.clock.now)
    served.tracker.call_ended("c1")
    served.tracker.call_routed("c3", "tech_support", served.clock.now, None)
    served.clock.now += timedelta(seconds=3600 + 62)
    await _row_is(page, "billing", waiting="0", ringing="0", longest_wait="0:00", busy="1")
    await _row_is(page, "support", waiting="1", longest_wait="1:01:02")
    wait = _skill(page, "support", "longest_wait")
    await expect(wait).to_have_attribute("data-seconds", "3662")
    await expect(page.locator('#agents tr[data-state="on_call"] td')).to_have_text("1")
    await expect(page.locator("#total-waiting")).to_have_text("1")


async def test_hostile_names_outages_and_a_lost_server(served: Served, page: Page) -> None:
    served.tracker.call_routed("c1", "billing", T0, "a2")
    await page.goto(served.url + "?every_ms=200")
    await expect(page.locator("#interval")).to_have_text("0.2")
    hostile = page.locator("#teams tbody tr").filter(has_text="night")
    await expect(hostile.locator("th")).to_have_text(XSS)
    await expect(hostile.locator('[data-col="available"]')).to_have_text("1")
    assert await page.locator("img").count() == 0

    served.agents.down = True  # the live agent state is down: calls still show
    await expect(page.locator("#agent-state-warning")).to_be_visible()
    await expect(page.locator('#agents tr[data-state="available"] td')).to_have_text("0")
    await _row_is(page, "billing", waiting="1", ringing="1")
    served.agents.down = False
    await expect(page.locator("#agent-state-warning")).to_be_hidden()

    served.broken[0] = True  # the server fails: the last figures stay, the status says so
    await expect(page.locator("#status")).to_have_attribute("data-state", "offline")
    await expect(page.locator("#status")).to_contain_text("503")
    await _row_is(page, "billing", waiting="1")
    served.broken[0] = False
    served.tracker.call_ended("c1")
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")
    await _row_is(page, "billing", waiting="0")
