"""The agent desktop in a real headless Chromium (Debian's /usr/bin/chromium via Playwright).

The app is served on a real localhost port, exactly as the engine mounts it (/desktop), with
a real SQLite timeline and the in-process agent store. The test plays routing: it reserves
and confirms the agent and calls ``hub.pop`` as the phone rings; the page must show it.
Waits are on page conditions (Playwright's auto-waiting ``expect``), never on sleeps.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Page, expect

from ivr_engine.agents import AgentState, AgentStateStore, open_agent_state_store
from ivr_engine.desktop import (
    MASK,
    AgentDirectory,
    DesktopAgent,
    DesktopConfig,
    DesktopHub,
    Ring,
    create_desktop_app,
    hash_password,
    intent_labels_from_menus,
    masking_from_menus,
)
from ivr_engine.menu_config import load_menus
from ivr_engine.ports import Identity, NewTimelineEvent
from ivr_engine.timeline import Timeline, open_timeline
from ivr_engine.timeline.migrate import upgrade

# One Chromium for the module (launching it is the slow part): every async fixture and test
# runs on the module's event loop.
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]
module_fixture = pytest_asyncio.fixture(loop_scope="module", scope="module")
per_test_fixture = pytest_asyncio.fixture(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
XSS = "<img src=x onerror=alert(1)>"


@dataclass
class Served:
    url: str
    agents: AgentStateStore
    hub: DesktopHub
    timeline: Timeline


@module_fixture
async def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("desktop-browser") / "template.db"
    await upgrade(f"sqlite:///{path}")
    return path


@per_test_fixture
async def served(tmp_path: Path, migrated_db: Path) -> AsyncIterator[Served]:
    menus = load_menus(REPO / "config" / "menus")
    shutil.copyfile(migrated_db, tmp_path / "timeline.db")
    timeline = await open_timeline("sqlite:///" + str(tmp_path / "timeline.db"), migrate=False)
    agents = open_agent_state_store(None)
    hub = DesktopHub(
        timeline.store,
        masking=masking_from_menus(menus.values()),
        intent_labels=intent_labels_from_menus(menus.values()),
    )
    directory = AgentDirectory(
        [DesktopAgent("a100", "Alice Martin", "PJSIP/alice", hash_password(PASSWORD, n=2**12))]
    )
    root = web.Application()
    root.add_subapp(
        "/desktop",
        create_desktop_app(directory=directory, agents=agents, hub=hub, config=DesktopConfig()),
    )
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Served(f"http://127.0.0.1:{port}/desktop/", agents, hub, timeline)
    finally:
        await runner.cleanup()
        await agents.aclose()
        await timeline.close()


async def _seed_customer(timeline: Timeline, name: str) -> str:
    store = timeline.store
    customer = await store.create_customer(
        name, [Identity("phone", "+15550100001"), Identity("account", "12345678")]
    )
    now = datetime.now(UTC)
    history = [("chat", "billing", 2), ("email", "moving", 5), ("voice", "billing", 9)]
    await store.append_events(
        [
            NewTimelineEvent(
                event_id=f"seed-{channel}",
                customer_id=customer.customer_id,
                occurred_at=now - timedelta(days=days),
                channel=channel,
                event_type=f"{channel}.contact",
                intent=intent,
            )
            for channel, intent, days in history
        ]
    )
    return customer.customer_id


def _ring(customer_id: str, call_id: str, **kw: Any) -> Ring:
    fields: dict[str, Any] = {
        "call_id": call_id,
        "customer_id": customer_id,
        "intent": "moving",
        "caller_id": "+15550100001",
        "target": "queue:moving",
        "path": (
            {"step": "shortcut", "intent": "billing", "digits": "2", "accepted": False},
            {"step": "menu", "attempt": 1, "digits": "3", "intent": "moving"},
        ),
        "entered": {"postcode": "90210"},
        "prefilled": {"account_number": "12345678"},
        "routing_reasons": ("speaks en", "longest idle of 3 agents: 42 s"),
    }
    return Ring(**{**fields, **kw})


async def _log_in(page: Page, url: str) -> None:
    await page.goto(url)
    await page.fill("#login-agent", "a100")
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await expect(page.locator("#agent-name")).to_have_text("Alice Martin")
    await expect(page.locator("#connection")).to_have_attribute("data-connected", "true")


async def _state_is(page: Page, state: str) -> None:
    await expect(page.locator("#state")).to_have_attribute("data-state", state)


async def test_agent_goes_available_gets_a_screen_pop_and_wraps_up(
    served: Served, page: Page
) -> None:
    customer_id = await _seed_customer(served.timeline, "Grace Hopper")
    await page.goto(served.url)
    await page.fill("#login-agent", "a100")
    await page.fill("#login-password", "wrong")
    await page.click("#login-submit")
    await expect(page.locator("#message")).to_have_text("unknown agent or wrong password")

    await _log_in(page, served.url)
    await _state_is(page, "logged_out")
    await page.click("button[data-action=available]")
    await _state_is(page, "available")
    assert (await served.agents.get("a100")).state is AgentState.AVAILABLE

    # routing: reserve the agent, ring the phone, pop the screen
    assert await served.agents.reserve("a100", "call-1", 30)
    await served.agents.confirm("a100", "call-1")
    await _state_is(page, "ringing")
    await served.hub.pop("a100", _ring(customer_id, "call-1"))

    pop = page.locator("#pop")
    await expect(pop).to_be_visible()
    await expect(page.locator("#pop-customer-name")).to_have_text("Grace Hopper")
    await expect(page.locator("#pop-intent")).to_have_text("Moving home (moving)")
    await expect(page.locator("#pop-verified")).to_have_text("no (sensitive fields hidden)")
    await expect(page.locator("#pop-path li")).to_have_text(
        [
            "shortcut (intent=billing, digits=2, accepted=no)",
            "menu (attempt=1, digits=3, intent=moving)",
        ]
    )
    postcode = page.locator("tr[data-field=postcode] td").nth(1)
    await expect(postcode).to_have_text(MASK)
    await expect(postcode).to_have_attribute("data-masked", "true")
    account = page.locator("tr[data-field=account_number] td").nth(1)
    await expect(account).to_have_text("12345678")
    assert "90210" not in await page.content()
    contacts = page.locator("#pop-contacts tbody tr")
    await expect(contacts).to_have_count(3)
    await expect(contacts.locator("td:nth-child(2)")).to_have_text(["chat", "email", "voice"])
    await expect(contacts.nth(0).locator("td").nth(2)).to_have_text(
        "Pay your bill or ask about charges (billing)"
    )
    await expect(page.locator("#pop-routing-reasons li")).to_have_text(
        ["speaks en", "longest idle of 3 agents: 42 s"]
    )
    await expect(page.locator("#pop-identities li")).to_have_text(
        ["account: 12345678", "phone: +15550100001"]
    )

    # answered; a state the agent cannot leave by hand says so clearly
    await served.agents.confirm("a100", "call-1")
    await _state_is(page, "on_call")
    await page.click("button[data-action=pause]")
    await expect(page.locator("#message")).to_have_text(
        "You cannot pause while on a call: finish the call first."
    )
    await _state_is(page, "on_call")

    # hang-up → wrap-up; the agent finishes wrap-up
    assert await served.agents.release("a100", "call-1")
    await _state_is(page, "wrap_up")
    await expect(page.locator("#state")).to_have_text("Wrap-up")
    await page.click("button[data-action=finish_wrap_up]")
    await _state_is(page, "available")
    await expect(page.locator("#state")).to_have_text("Available")
    await expect(page.locator("#message")).to_be_hidden()
    assert (await served.agents.get("a100")).state is AgentState.AVAILABLE

    await page.click("#sign-out")
    await expect(page.locator("#login-form")).to_be_visible()
    assert (await served.agents.get("a100")).state is AgentState.LOGGED_OUT


async def test_hostile_customer_data_renders_as_text(served: Served, page: Page) -> None:
    customer_id = await _seed_customer(served.timeline, XSS)
    # the pop arrives while no page is open: the page shows it when it loads
    hostile = _ring(
        customer_id,
        "call-<b>2</b>",
        path=({"step": "<script>alert(2)</script>", XSS: XSS},),
        routing_reasons=(XSS,),
        verified=True,
        entered={"postcode": XSS},
        verified_by={"account_number": XSS},
    )
    assert await served.hub.pop("a100", hostile) == 0
    await _log_in(page, served.url)
    await expect(page.locator("#pop-customer-name")).to_have_text(XSS)
    await expect(page.locator("#pop-call-id")).to_have_text("call-<b>2</b>")
    await expect(page.locator("#pop-routing-reasons li")).to_have_text([XSS])
    await expect(page.locator("#pop-path li")).to_have_text(
        [f"<script>alert(2)</script> ({XSS}={XSS})"]
    )
    await expect(page.locator("tr[data-field=postcode] td").nth(1)).to_have_text(XSS)
    await expect(page.locator("tr[data-field=account_number] td").nth(1)).to_have_text(XSS)
    await expect(page.locator("tr[data-field=account_number] td").nth(2)).to_have_text("verified")
    await expect(page.locator("#pop-verified")).to_have_text("yes, by account_number")
    assert await page.locator("#pop img, #pop script, #pop b").count() == 0
    # a reload keeps the session (cookie) and the latest pop
    await page.reload()
    await expect(page.locator("#pop-customer-name")).to_have_text(XSS)
    assert await page.locator("img").count() == 0
