"""The customer timeline page in a real headless Chromium (Debian's /usr/bin/chromium).

One real aiohttp server on a localhost port serves the engine's API app (the root) and the
page at /timeline, as the engine mounts them, over a real SQLite timeline. The page is
served with a page size of 2 so that "Load older" is exercised. Waits are on page
conditions (Playwright's auto-waiting ``expect``), never on sleeps.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, ConsoleMessage, Locator, Page, expect

from ivr_engine.api.app import create_api_app
from ivr_engine.menu_config import load_menus
from ivr_engine.ports import Identity, NewTimelineEvent
from ivr_engine.timeline import Timeline, open_timeline
from ivr_engine.timeline.migrate import upgrade
from ivr_engine.timeline_ui import create_timeline_ui_app

# One Chromium for the module (launching it is the slow part).
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]
module_fixture = pytest_asyncio.fixture(loop_scope="module", scope="module")
per_test_fixture = pytest_asyncio.fixture(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
XSS = "<img src=x onerror=alert(1)>"
PHONE = "+15550100001"
TIMEOUT_MS = 5000
PAGE_SIZE = 2
START = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)


@dataclass
class Served:
    url: str
    timeline: Timeline


@module_fixture
async def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("timeline-ui-browser") / "template.db"
    await upgrade(f"sqlite:///{path}")
    return path


@asynccontextmanager
async def serving(
    tmp_path: Path, migrated_db: Path, api_tokens: Sequence[str] = ()
) -> AsyncIterator[Served]:
    """The API app at the root and the page at /timeline, as the engine mounts them."""
    shutil.copyfile(migrated_db, tmp_path / "timeline.db")
    timeline = await open_timeline(f"sqlite:///{tmp_path / 'timeline.db'}", migrate=False)
    root = create_api_app(
        store=timeline.store,
        lookup=timeline.lookup,
        menus=load_menus(REPO / "config" / "menus"),
        clock=lambda: datetime.now(UTC),
        default_region="US",
        api_tokens=api_tokens,
    )
    ui = create_timeline_ui_app(
        timeline.store, page_size=PAGE_SIZE, token_required=bool(api_tokens)
    )
    root.add_subapp("/timeline", ui)
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Served(f"http://127.0.0.1:{port}/timeline/", timeline)
    finally:
        await runner.cleanup()
        await timeline.close()


@per_test_fixture
async def served(tmp_path: Path, migrated_db: Path) -> AsyncIterator[Served]:
    async with serving(tmp_path, migrated_db) as running:
        yield running


@per_test_fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page; no dialog, no script error and no CSP violation may happen on it."""
    context = await browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    opened = await context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    opened.on("dialog", lambda dialog: dialogs.append(dialog.message))
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("console", on_console)
    try:
        yield opened
    finally:
        await context.close()
    assert dialogs == [], f"a script ran a dialog: {dialogs}"
    assert errors == [], f"page errors: {errors}"
    assert violations == [], f"CSP violations: {violations}"


# --------------------------------------------------------------------------- seeding


def _voice_data(**overrides: Any) -> dict[str, Any]:
    """What ``flows.call_record.to_write`` stores for a routed call."""
    data: dict[str, Any] = {
        "outcome": "routed",
        "caller_id": PHONE,
        "menu": "main",
        "identified_by": "caller_id",
        "decision": {
            "personalised": True,
            "order": ["1:billing", "2:moving"],
            "shortcut": "billing",
            "reasons": ["2 billing contacts in the last 7 days", "open case CASE-7"],
        },
        "path": [
            {"step": "shortcut", "intent": "billing", "digits": "1", "accepted": True},
            {"step": "prefilled", "fields": ["account_number"]},
        ],
        "prefilled": ["account_number"],
        "entered": [],
        "target": "queue:billing",
        "routing": {
            "target": "queue:billing",
            "agent_id": None,
            "reasons": ["no agent free; queued for billing"],
        },
        "duration_ms": 41000,
    }
    return {**data, **overrides}


def _event(
    customer_id: str, n: int, channel: str, *, case_id: str | None = None, **kw: Any
) -> NewTimelineEvent:
    return NewTimelineEvent(
        event_id=f"seed-{n}",
        customer_id=customer_id,
        occurred_at=START + timedelta(days=n),
        channel=channel,
        event_type=kw.pop("event_type", f"{channel}.message"),
        case_id=case_id,
        **kw,
    )


async def _seed(timeline: Timeline, name: str, *, text: str = "See you then") -> str:
    """Email, voice (CASE-7), SMS, chat (CASE-7), stored in that order (seq 1 to 4)."""
    customer = await timeline.store.create_customer(
        name, [Identity("phone", PHONE), Identity("email", "ada@example.com")]
    )
    cid = customer.customer_id
    await timeline.store.append_events(
        [
            _event(cid, 1, "email", data={"subject": "Moving on the 1st"}),
            _event(
                cid,
                2,
                "voice",
                case_id="CASE-7",
                event_type="call.ivr",
                intent="billing",
                data=_voice_data(),
            ),
            _event(cid, 3, "sms", data={"text": "Your bill is ready"}),
            _event(cid, 4, "chat", case_id="CASE-7", intent="billing", data={"text": text}),
        ]
    )
    return cid


async def _search(page: Page, query: str) -> None:
    await page.fill("#search-input", query)
    await page.click("#search-submit")


def _groups(page: Page) -> Locator:
    return page.locator("#timeline > li")


# --------------------------------------------------------------------------- tests


async def test_search_by_phone_shows_the_timeline_grouped_by_case_and_pages(
    served: Served, page: Page
) -> None:
    await _seed(served.timeline, "Ada Lovelace")
    await page.goto(served.url)
    await _search(page, PHONE)

    await expect(page.locator("#customer-name")).to_have_text("Ada Lovelace")
    await expect(page.locator("#customer-identities li")).to_have_text(
        ["email: ada@example.com", f"phone: {PHONE}"]
    )
    # first page (2 newest): the chat of CASE-7, then the SMS
    groups = _groups(page)
    await expect(groups).to_have_count(2)
    await expect(groups.nth(0)).to_have_attribute("data-case", "CASE-7")
    await expect(groups.nth(0).locator(".channel-label")).to_have_text(["Chat"])
    await expect(groups.nth(1).locator(".channel-label")).to_have_text(["SMS"])
    await expect(page.locator("#timeline-end")).to_be_hidden()

    # older page: the voice call joins the CASE-7 thread; the e-mail comes last
    await page.click("#load-older")
    await expect(groups).to_have_count(3)
    thread = groups.nth(0)
    await expect(thread.locator(".channel-label")).to_have_text(["Chat", "Voice call"])
    await expect(thread.locator(".thread-head")).to_have_text(
        "Case CASE-7 · 2 contacts · Chat, Voice call"
    )
    await expect(groups.nth(1).locator(".channel-label")).to_have_text(["SMS"])
    await expect(groups.nth(2).locator(".channel-label")).to_have_text(["E-mail"])
    await expect(page.locator("#timeline article.event").first).to_have_attribute("data-seq", "4")
    await expect(page.locator("#load-older")).to_be_hidden()
    await expect(page.locator("#timeline-end")).to_be_visible()

    voice = thread.locator("article[data-channel=voice]")
    await expect(voice.locator("[data-detail=intent]")).to_have_text("billing")
    await expect(voice.locator("[data-detail=outcome]")).to_have_text("routed")
    await expect(voice.locator("[data-detail=path] li")).to_have_text(
        [
            "shortcut (intent=billing, digits=1, accepted=yes)",
            "prefilled (fields=account_number)",
        ]
    )
    await expect(voice.locator("[data-detail=menu-reasons] li")).to_have_text(
        ["2 billing contacts in the last 7 days", "open case CASE-7"]
    )
    await expect(voice.locator("[data-detail=routing-reasons] li")).to_have_text(
        ["no agent free; queued for billing"]
    )
    await expect(voice.locator("[data-detail=target]")).to_have_text("queue:billing")
    email = groups.nth(2)
    await expect(email.locator("[data-detail=subject]")).to_have_text("Moving on the 1st")
    # the search is in the address: a reload shows the same customer again
    assert f"q=%2B{PHONE[1:]}" in page.url
    await page.reload()
    await expect(page.locator("#customer-name")).to_have_text("Ada Lovelace")
    await expect(groups).to_have_count(2)


async def test_hostile_names_and_text_render_as_text(served: Served, page: Page) -> None:
    cid = await _seed(served.timeline, XSS, text=XSS)
    hostile_voice = _voice_data(
        path=[{"step": XSS, XSS: XSS}],
        routing={"target": XSS, "agent_id": None, "reasons": [XSS]},
    )
    await served.timeline.store.append_events(
        [
            _event(cid, 5, "voice", case_id=XSS, intent=XSS, data=hostile_voice),
            _event(cid, 6, XSS, event_type=XSS, data={XSS: {"nested": XSS}}),
        ]
    )
    await page.goto(f"{served.url}?q=ada%40example.com")  # a deep link, by e-mail
    await expect(page.locator("#search-input")).to_have_value("ada@example.com")
    await expect(page.locator("#customer-name")).to_have_text(XSS)
    groups = _groups(page)
    await expect(groups).to_have_count(2)
    odd = groups.nth(0)
    await expect(odd.locator(".channel-label")).to_have_text(XSS)
    await expect(odd.locator(".event-type")).to_have_text(XSS)
    await expect(odd.locator("dt")).to_have_text([XSS])
    await expect(odd.locator("dd")).to_have_text([f'{{"nested":"{XSS}"}}'])
    voice = groups.nth(1)
    await expect(voice.locator(".thread-head")).to_have_text(f"Case {XSS} · 1 contact · Voice call")
    await expect(voice.locator("[data-detail=intent]")).to_have_text(XSS)
    await expect(voice.locator("[data-detail=path] li")).to_have_text([f"{XSS} ({XSS}={XSS})"])
    await expect(voice.locator("[data-detail=routing-reasons] li")).to_have_text([XSS])
    await page.click("#load-older")
    chat = page.locator("article[data-channel=chat]")
    await expect(chat.locator("[data-detail=text]")).to_have_text(XSS)
    assert await page.locator("img, #timeline script, #customer b").count() == 0


async def test_unknown_or_invalid_identities_and_shared_phones(served: Served, page: Page) -> None:
    await page.goto(served.url)
    await _search(page, "+15550199999")
    message = page.locator("#message")
    await expect(message).to_have_text("No customer found for +15550199999.")
    await expect(message).to_have_attribute("data-kind", "info")
    await expect(page.locator("#customer")).to_be_hidden()

    await _search(page, "not a phone")
    await expect(message).to_have_attribute("data-kind", "error")
    await expect(message).to_be_visible()

    # two unmerged customers share a phone: the page lets the user choose
    store = served.timeline.store
    first = await store.create_customer("Ada L.", [Identity("phone", PHONE)])
    await store.create_customer("Ada Lovelace", [Identity("phone", PHONE)])
    await store.append_events([_event(first.customer_id, 1, "sms", data={"text": "hi"})])
    await _search(page, PHONE)
    choices = page.locator("#choice-list button")
    await expect(choices).to_have_count(2)
    await expect(message).to_be_hidden()
    await choices.filter(has_text=first.customer_id).click()
    await expect(page.locator("#customer-name")).to_have_text("Ada L.")
    await expect(page.locator("#choices")).to_be_hidden()
    await expect(page.locator("#timeline .channel-label")).to_have_text(["SMS"])
    await expect(page.locator("#timeline-end")).to_be_visible()
